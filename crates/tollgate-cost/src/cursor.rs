//! A cursor over JSON text that checks and skips values by serde_json's
//! own grammar for the values it ignores (its `ignore_value`), building
//! nothing: strings are checked for control characters and escapes but not
//! for UTF-8, numbers for their shape but not their range. What
//! [`top_level`](crate::top_level) walks an answer with.

/// Why a walk stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Serde rejects the text.
    Rejected,
    /// Only serde can tell.
    Unsure,
}

pub(crate) type Step<T = ()> = Result<T, Stop>;

/// How deep [`Cursor::value`] follows nested values itself: one bit of a
/// `u64` per level says whether it is an object or an array. Answers nest
/// a handful of levels; deeper ones are [`Stop::Unsure`], left to serde.
pub(crate) const MAX_DEPTH: u32 = 64;

/// A position in JSON text.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    pub(crate) json: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(json: &'a [u8]) -> Cursor<'a> {
        Cursor { json, at: 0 }
    }

    /// The next byte that is not whitespace, left unread; `None` at the end.
    #[inline]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        loop {
            let byte = *self.json.get(self.at)?;
            if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(byte);
            }
            self.at += 1;
        }
    }

    /// Reads `byte`, after whitespace.
    #[inline]
    pub(crate) fn expect(&mut self, byte: u8) -> Step {
        if self.peek() != Some(byte) {
            return Err(Stop::Rejected);
        }
        self.at += 1;
        Ok(())
    }

    /// Reads `byte` if it comes next, after whitespace.
    #[inline]
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        self.at += usize::from(next);
        next
    }

    /// Skips a value and returns its text.
    pub(crate) fn value_text(&mut self) -> Step<&'a [u8]> {
        self.peek();
        let start = self.at;
        self.value()?;
        Ok(&self.json[start..self.at])
    }

    /// Skips one value: without recursion, the kind of each open container
    /// a bit of `objects`.
    pub(crate) fn value(&mut self) -> Step {
        let mut objects = 0u64;
        let mut depth = 0;
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
                        if depth == MAX_DEPTH {
                            return Err(Stop::Unsure);
                        }
                        depth += 1;
                        objects = (objects << 1) | u64::from(open == b'{');
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
                _ => return Err(Stop::Rejected),
            }
            // A value ended: close what it ends, or go on to the next.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let in_object = objects & 1 == 1;
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
                    _ => return Err(Stop::Rejected),
                }
                self.at += 1;
                objects >>= 1;
                depth -= 1;
            }
        }
    }

    /// A nested object's key and its colon.
    #[inline]
    fn key(&mut self) -> Step {
        self.expect(b'"')?;
        self.string()?;
        self.expect(b':')
    }

    /// `word`, whose first byte was peeked.
    pub(crate) fn literal(&mut self, word: &[u8]) -> Step {
        if !self.json[self.at..].starts_with(word) {
            return Err(Stop::Rejected);
        }
        self.at += word.len();
        Ok(())
    }

    /// A number after its optional `-`: digits without a leading zero, then
    /// an optional fraction and exponent, each with at least one digit.
    pub(crate) fn number(&mut self) -> Step {
        match self.json.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Stop::Rejected),
        }
        if self.json.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(Stop::Rejected);
            }
        }
        if let Some(b'e' | b'E') = self.json.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.json.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(Stop::Rejected);
            }
        }
        Ok(())
    }

    /// Reads the digits here; how many.
    #[inline]
    pub(crate) fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.json.get(self.at) {
            self.at += 1;
        }
        self.at - start
    }

    /// The rest of a string after its opening quote, through its closing
    /// one; whether it had escapes. No control character, every escape one
    /// of JSON's. Inlined: most strings of an answer are short keys, whose
    /// call would cost more than their scan.
    #[inline]
    pub(crate) fn string(&mut self) -> Step<bool> {
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
                _ => return Err(Stop::Rejected),
            }
            self.skip_plain_run()?;
        }
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

    /// [`Cursor::skip_plain_run`] in the last bytes of the text.
    #[inline(never)]
    fn skip_plain_run_in_tail(&mut self) -> Step {
        let tail = &self.json[self.at..];
        let offset = tail
            .iter()
            .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
            .ok_or(Stop::Rejected)?;
        self.at += offset;
        Ok(())
    }

    /// An escape, from its backslash.
    fn escape(&mut self) -> Step {
        let length = match self.json.get(self.at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
            Some(b'u') => {
                let hex = self.json.get(self.at + 2..self.at + 6);
                if !hex.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    return Err(Stop::Rejected);
                }
                6
            }
            _ => return Err(Stop::Rejected),
        };
        self.at += length;
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_ends_at_its_first_quote_backslash_or_control_byte() {
        for length in 0..40 {
            for special in [b'"', b'\\', 0x00, 0x1f] {
                let mut text = vec![b'a'; length];
                text.extend([special, b'"', 0x01]);
                let mut cursor = Cursor::new(&text);
                assert_eq!(cursor.skip_plain_run(), Ok(()));
                assert_eq!(cursor.at, length, "{length} {special}");
            }
            // Bytes around the specials' values, and UTF-8, are plain.
            let plain: Vec<u8> = [b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xc3, 0xa9, 0xff]
                .into_iter()
                .cycle()
                .take(length)
                .collect();
            let mut cursor = Cursor::new(&plain);
            assert_eq!(cursor.skip_plain_run(), Err(Stop::Rejected), "{length}");
        }
    }
}
