//! [`Cursor`]: a position in JSON text that reads it by serde_json's
//! grammar without building anything, for the readers on the hot path —
//! every stream chunk ([`ChunkView`](crate::ChunkView)) and every answer's
//! usage (the cost layer) — that want a few fields of a text and would
//! otherwise pay serde for the whole of it.
//!
//! Its verdicts are serde_json's, so that a reader built on it can be held
//! to a serde reader as its oracle: a value it skips is checked as
//! serde_json's `ignore_value` checks one (strings for control characters
//! and escapes but not for UTF-8, numbers for their shape but not their
//! range, nesting as deep as it goes), and a string it reads as text
//! ([`Cursor::text`]) is checked as serde reads a `&str`: UTF-8, escapes
//! decoded, surrogates paired.
//!
//! ```
//! use tollgate_core::json_cursor::Cursor;
//!
//! let mut cursor = Cursor::new(br#" {"model":"m","n":[1,{"x":null}]} "#);
//! let mut keys = Vec::new();
//! cursor.expect(b'{')?;
//! cursor.members(|cursor, key| {
//!     keys.push(key.to_vec());
//!     cursor.value()
//! })?;
//! assert!(cursor.at_end());
//! assert_eq!(keys, [&b"model"[..], b"n"]);
//! # Ok::<(), tollgate_core::json_cursor::Malformed>(())
//! ```

use std::borrow::Cow;

/// The text is not JSON, or not JSON of the shape the reader wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON")]
pub struct Malformed;

/// What a step of a walk gives: its value, or [`Malformed`].
pub type Step<T = ()> = Result<T, Malformed>;

/// A position in JSON text.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `json`.
    pub fn new(json: &'a [u8]) -> Cursor<'a> {
        Cursor { json, at: 0 }
    }

    /// The whole text.
    pub fn json(&self) -> &'a [u8] {
        self.json
    }

    /// Where the cursor is, in bytes from the start.
    pub fn position(&self) -> usize {
        self.at
    }

    /// A cursor at `position` of `json`: to go on with a text whose start
    /// was read before (the same bytes read the same way).
    pub fn starting_at(json: &'a [u8], position: usize) -> Cursor<'a> {
        Cursor {
            json,
            at: position.min(json.len()),
        }
    }

    /// Moves back to `position` (one [`Cursor::position`] gave), to read
    /// a value again another way.
    pub fn rewind(&mut self, position: usize) {
        debug_assert!(position <= self.at);
        self.at = position;
    }

    /// The text from the cursor on.
    pub fn rest(&self) -> &'a [u8] {
        &self.json[self.at..]
    }

    /// The next byte that is not whitespace, left unread; `None` at the end.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        loop {
            let byte = *self.json.get(self.at)?;
            if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(byte);
            }
            self.at += 1;
        }
    }

    /// Whether only whitespace is left, as after a whole document.
    #[inline]
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Reads `byte`, after whitespace.
    #[inline]
    pub fn expect(&mut self, byte: u8) -> Step {
        if self.peek() != Some(byte) {
            return Err(Malformed);
        }
        self.at += 1;
        Ok(())
    }

    /// Reads `byte` if it comes next, after whitespace.
    #[inline]
    pub fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        self.at += usize::from(next);
        next
    }

    /// The members of an object whose `{` was read, through its `}`:
    /// `member` reads each value, given its key as serde reads a map's key
    /// (checked and decoded as [`Cursor::text`] does), as the bytes of its
    /// UTF-8: keys are compared, never shown, and most are ASCII, whose
    /// check costs nothing more than the scan for their end.
    #[inline]
    pub fn members<E: From<Malformed>>(
        &mut self,
        mut member: impl FnMut(&mut Self, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            self.expect(b'"')?;
            let key = self.key_text()?;
            self.expect(b':')?;
            member(self, &key)?;
            if !self.eat(b',') {
                return Ok(self.expect(b'}')?);
            }
        }
    }

    /// The elements of an array whose `[` was read, through its `]`:
    /// `element` reads each one.
    #[inline]
    pub fn elements<E: From<Malformed>>(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            element(self)?;
            if !self.eat(b',') {
                return Ok(self.expect(b']')?);
            }
        }
    }

    /// Skips an array, from its `[` (after whitespace): how many elements
    /// it had.
    pub fn array_length(&mut self) -> Step<usize> {
        self.expect(b'[')?;
        let mut length = 0;
        self.elements(|cursor| {
            length += 1;
            cursor.value()
        })?;
        Ok(length)
    }

    /// Skips a value and returns its text.
    pub fn value_text(&mut self) -> Step<&'a [u8]> {
        self.peek();
        let start = self.at;
        self.value()?;
        Ok(&self.json[start..self.at])
    }

    /// Skips one value, however deep it nests.
    #[inline]
    pub fn value(&mut self) -> Step {
        // Most values skipped are strings, numbers and `null`s: no nesting
        // to keep.
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                self.string().map(drop)
            }
            Some(b'0'..=b'9') => self.number(),
            Some(b'n') => self.literal(b"null"),
            _ => self.nested_value(),
        }
    }

    /// [`Cursor::value`] for any value: without recursion, the kind of
    /// each open container a bit of a [`Nesting`].
    fn nested_value(&mut self) -> Step {
        let mut nesting = Nesting::default();
        loop {
            // A value starts here.
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    self.string()?;
                }
                Some(open @ (b'{' | b'[')) => {
                    self.at += 1;
                    let close = if open == b'{' { b'}' } else { b']' };
                    if !self.eat(close) {
                        nesting.open(open == b'{');
                        if open == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b'-') => {
                    self.at += 1;
                    self.number()?;
                }
                Some(b'0'..=b'9') => self.number()?,
                Some(b'n') => self.literal(b"null")?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                _ => return Err(Malformed),
            }
            // A value ended: close what it ends, or go on to the next.
            loop {
                let Some(in_object) = nesting.innermost_is_object() else {
                    return Ok(());
                };
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if in_object {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {}
                    Some(b']') if !in_object => {}
                    _ => return Err(Malformed),
                }
                self.at += 1;
                nesting.close();
            }
        }
    }

    /// A nested object's key and its colon, skipped.
    #[inline]
    fn key(&mut self) -> Step {
        self.expect(b'"')?;
        self.string()?;
        self.expect(b':')
    }

    /// `word`, whose first byte was peeked.
    pub fn literal(&mut self, word: &[u8]) -> Step {
        if !self.json[self.at..].starts_with(word) {
            return Err(Malformed);
        }
        self.at += word.len();
        Ok(())
    }

    /// A number after its optional `-`: digits without a leading zero, then
    /// an optional fraction and exponent, each with at least one digit.
    pub fn number(&mut self) -> Step {
        match self.json.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Malformed),
        }
        if self.json.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(Malformed);
            }
        }
        if let Some(b'e' | b'E') = self.json.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.json.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(Malformed);
            }
        }
        Ok(())
    }

    /// Reads the digits here; how many.
    #[inline]
    pub fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.json.get(self.at) {
            self.at += 1;
        }
        self.at - start
    }

    /// Skips the rest of a string after its opening quote, through its
    /// closing one; whether it had escapes. No control character, every
    /// escape one of JSON's. Inlined: most strings of a text are short
    /// keys, whose call would cost more than their scan.
    #[inline]
    pub fn string(&mut self) -> Step<bool> {
        self.skip_plain_run()?;
        if self.json.get(self.at) == Some(&b'"') {
            self.at += 1;
            return Ok(false);
        }
        self.string_from_special_byte()
    }

    /// The rest of a string from a special byte that is not its closing
    /// quote: an escape, or a control character that ends it badly.
    #[inline(never)]
    fn string_from_special_byte(&mut self) -> Step<bool> {
        loop {
            match self.json.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(true);
                }
                Some(b'\\') => self.escape()?,
                _ => return Err(Malformed),
            }
            self.skip_plain_run()?;
        }
    }

    /// Reads the rest of a key after its opening quote, checked and
    /// decoded as [`Cursor::text`] reads a string: its bytes, borrowed
    /// unless it had escapes.
    #[inline(always)]
    pub(crate) fn key_text(&mut self) -> Step<Cow<'a, [u8]>> {
        // Most keys are short and ASCII: one or two words hold the key
        // and its closing quote.
        for first in [0, 8] {
            let Some(chunk) = self.json.get(self.at + first..self.at + first + 8) else {
                break;
            };
            let mut bytes = [0; 8];
            bytes.copy_from_slice(chunk);
            let word = u64::from_le_bytes(bytes);
            let found = special_bytes(word);
            if found == 0 {
                if word & HIGH_BITS != 0 {
                    break;
                }
                continue;
            }
            let length = found.trailing_zeros() as usize / 8;
            let tail = word & ((1u64 << (length * 8)) - 1);
            if chunk[length] == b'"' && tail & HIGH_BITS == 0 {
                let raw = &self.json[self.at..self.at + first + length];
                self.at += first + length + 1;
                return Ok(Cow::Borrowed(raw));
            }
            break;
        }
        self.long_key_text()
    }

    /// [`Cursor::key_text`] for a key that is not short and plain.
    #[inline(never)]
    fn long_key_text(&mut self) -> Step<Cow<'a, [u8]>> {
        let start = self.at;
        let ascii = self.skip_plain_run_ascii()?;
        if self.json.get(self.at) == Some(&b'"') {
            let raw = &self.json[start..self.at];
            self.at += 1;
            if !ascii && std::str::from_utf8(raw).is_err() {
                return Err(Malformed);
            }
            return Ok(Cow::Borrowed(raw));
        }
        let text = self.text_with_escapes(start)?;
        Ok(Cow::Owned(text.into_bytes()))
    }

    /// Reads the rest of a string after its opening quote as serde reads a
    /// `&str`: UTF-8, its escapes decoded (a surrogate only as half of a
    /// pair), borrowed from the text unless it had escapes.
    #[inline]
    pub fn text(&mut self) -> Step<Cow<'a, str>> {
        let start = self.at;
        self.skip_plain_run()?;
        if self.json.get(self.at) == Some(&b'"') {
            let raw = &self.json[start..self.at];
            self.at += 1;
            return std::str::from_utf8(raw)
                .map(Cow::Borrowed)
                .map_err(|_| Malformed);
        }
        self.text_with_escapes(start).map(Cow::Owned)
    }

    /// Moves to the first `"`, `\` or control character from here: the
    /// bytes that end or interrupt a string's plain run. Eight bytes at a
    /// time while eight remain (they may run past the string: the first
    /// special byte is still the one wanted), as serde_json does it.
    #[inline]
    fn skip_plain_run(&mut self) -> Step {
        while let Some(chunk) = self.json.get(self.at..self.at + 8) {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            let found = special_bytes(u64::from_le_bytes(word));
            if found != 0 {
                self.at += found.trailing_zeros() as usize / 8;
                return Ok(());
            }
            self.at += 8;
        }
        self.skip_plain_run_in_tail()
    }

    /// [`Cursor::skip_plain_run`], telling whether the bytes it passed are
    /// all ASCII (then they are UTF-8, unchecked further).
    #[inline]
    fn skip_plain_run_ascii(&mut self) -> Step<bool> {
        let mut high = 0;
        while let Some(chunk) = self.json.get(self.at..self.at + 8) {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(chunk);
            let word = u64::from_le_bytes(bytes);
            let found = special_bytes(word);
            if found != 0 {
                let before = found.trailing_zeros() as usize / 8;
                // Only the bytes before the special one are the string's.
                high |= word & ((1u64 << (before * 8)) - 1);
                self.at += before;
                return Ok(high & HIGH_BITS == 0);
            }
            high |= word;
            self.at += 8;
        }
        let start = self.at;
        self.skip_plain_run_in_tail()?;
        Ok(high & HIGH_BITS == 0 && self.json[start..self.at].is_ascii())
    }

    /// [`Cursor::skip_plain_run`] in the last bytes of the text.
    #[inline(never)]
    fn skip_plain_run_in_tail(&mut self) -> Step {
        let tail = &self.json[self.at..];
        let offset = tail
            .iter()
            .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
            .ok_or(Malformed)?;
        self.at += offset;
        Ok(())
    }

    /// Skips an escape, from its backslash.
    fn escape(&mut self) -> Step {
        let length = match self.json.get(self.at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
            Some(b'u') => {
                let hex = self.json.get(self.at + 2..self.at + 6);
                if !hex.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    return Err(Malformed);
                }
                6
            }
            _ => return Err(Malformed),
        };
        self.at += length;
        Ok(())
    }
}

/// The containers open around a value being skipped, innermost last: one
/// bit each, set for an object. Answers and chunks nest a handful of
/// levels, held in one word; deeper ones spill to the heap, a word per 64
/// levels (serde_json skips a value of any depth, and so must a reader
/// held to it).
#[derive(Debug, Default)]
struct Nesting {
    depth: usize,
    innermost: u64,
    outer: Vec<u64>,
}

impl Nesting {
    #[inline]
    fn open(&mut self, object: bool) {
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.outer.push(self.innermost);
            self.innermost = 0;
        }
        self.innermost = (self.innermost << 1) | u64::from(object);
        self.depth += 1;
    }

    #[inline]
    fn close(&mut self) {
        self.innermost >>= 1;
        self.depth -= 1;
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.innermost = self.outer.pop().unwrap_or_default();
        }
    }

    /// Whether the innermost open container is an object; `None` when
    /// none is open.
    #[inline]
    fn innermost_is_object(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.innermost & 1 == 1)
    }
}

/// The high bit of every byte of a word.
const HIGH_BITS: u64 = (u64::MAX / 255) << 7;

/// The high bit of each byte of `word` (little-endian) that is `"`, `\` or
/// a control character — exact up to the first one; later ones may be
/// false alarms a borrow made, never earlier ones.
#[inline]
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    ((word.wrapping_sub(ONES * 0x20) & !word)
        | (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash))
        & (ONES << 7)
}

mod escapes;

#[cfg(test)]
mod tests;
