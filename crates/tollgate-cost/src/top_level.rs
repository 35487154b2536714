//! One pass over the top level of a JSON answer, for
//! [`Reported::read`](crate::usage::Reported::read): every answer the layer
//! reads goes through here, and all it needs of one is its `usage` (or its
//! `response`'s), how many `choices` it has and whether its `error` is
//! non-null. Serde would build the whole envelope around those; this walks
//! the top level once, skips every other value without building anything,
//! and hands serde only the `usage` and `response` values.
//!
//! Its verdicts are serde's — the callers' oracle is
//! `serde_json::from_slice` into the envelope this replaces, and the tests
//! hold the two to the same answers: a value is skipped by serde_json's own
//! grammar for ignored values (strings checked for control characters and
//! escapes, not for UTF-8; numbers checked for their shape, not their
//! range), top-level keys are checked for UTF-8 as serde's field names are,
//! a known key twice is an error as serde's derive makes it, and anything
//! after the object but whitespace is an error. What this does not decide
//! cheaply — a top-level array (serde's derive reads a struct from one), a
//! key with escapes, values nested deeper than [`MAX_DEPTH`] — it leaves to
//! serde: [`Skim::Unsure`].

/// What [`skim`] made of a body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Skim<'a> {
    /// A JSON object: what its top level holds.
    Object(TopLevel<'a>),
    /// Not JSON, or JSON serde's envelope rejects.
    Rejected,
    /// A body only serde can tell about (see the module doc).
    Unsure,
}

/// The top-level values of an object the cost layer looks at.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TopLevel<'a> {
    /// The text of its `usage` value, when it had one (`null` included).
    pub(crate) usage: Option<&'a [u8]>,
    /// The text of its `response` value (a Responses stream event's).
    pub(crate) response: Option<&'a [u8]>,
    /// How many elements its `choices` array had (`None` without the key,
    /// or when it is `null`).
    pub(crate) choices: Option<usize>,
    /// Whether it had a non-null `error`.
    pub(crate) error: bool,
}

/// How deep [`skim`] follows nested values itself: one bit of a `u64` per
/// level says whether it is an object or an array. Answers nest a handful
/// of levels; deeper ones go to serde.
pub(crate) const MAX_DEPTH: u32 = 64;

/// Walks `json`'s top level once (see the module doc).
pub(crate) fn skim(json: &[u8]) -> Skim<'_> {
    let mut cursor = Cursor { json, at: 0 };
    let walked = match cursor.peek() {
        Some(b'{') => cursor.object(),
        // Serde reads the envelope from an array too, by position.
        Some(b'[') => Err(Stop::Unsure),
        _ => Err(Stop::Rejected),
    };
    match walked {
        // Only whitespace may follow, as `serde_json::from_slice` wants.
        Ok(top) if cursor.peek().is_none() => Skim::Object(top),
        Ok(_) | Err(Stop::Rejected) => Skim::Rejected,
        Err(Stop::Unsure) => Skim::Unsure,
    }
}

/// Why a walk stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Serde rejects the body.
    Rejected,
    /// Only serde can tell.
    Unsure,
}

type Step<T = ()> = Result<T, Stop>;

/// The top-level keys the layer looks at, each a bit of the keys seen.
const USAGE: u8 = 1;
const CHOICES: u8 = 2;
const ERROR: u8 = 4;
const RESPONSE: u8 = 8;

struct Cursor<'a> {
    json: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// The next byte that is not whitespace, left unread; `None` at the end.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.json.get(self.at) {
            if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    /// Reads `byte`, after whitespace.
    fn expect(&mut self, byte: u8) -> Step {
        if self.peek() != Some(byte) {
            return Err(Stop::Rejected);
        }
        self.at += 1;
        Ok(())
    }

    /// The top-level object, from its `{`.
    fn object(&mut self) -> Step<TopLevel<'a>> {
        let mut top = TopLevel::default();
        self.at += 1;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(top);
        }
        let mut seen = 0u8;
        loop {
            self.expect(b'"')?;
            let start = self.at;
            if self.string()? {
                // Serde compares the unescaped name, and rejects a lone
                // surrogate in it: its call.
                return Err(Stop::Unsure);
            }
            let key = &self.json[start..self.at - 1];
            if std::str::from_utf8(key).is_err() {
                return Err(Stop::Rejected);
            }
            self.expect(b':')?;
            let field = match key {
                b"usage" => USAGE,
                b"choices" => CHOICES,
                b"error" => ERROR,
                b"response" => RESPONSE,
                _ => 0,
            };
            if seen & field != 0 {
                // Serde's derive: "duplicate field".
                return Err(Stop::Rejected);
            }
            seen |= field;
            match field {
                USAGE => top.usage = Some(self.value_text()?),
                RESPONSE => top.response = Some(self.value_text()?),
                CHOICES => top.choices = self.choices()?,
                ERROR => top.error = self.error()?,
                _ => self.value()?,
            }
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(top);
                }
                _ => return Err(Stop::Rejected),
            }
        }
    }

    /// Skips a value and returns its text.
    fn value_text(&mut self) -> Step<&'a [u8]> {
        self.peek();
        let start = self.at;
        self.value()?;
        Ok(&self.json[start..self.at])
    }

    /// `choices` as serde's `Option<Vec<IgnoredAny>>` reads it: `null`, or
    /// an array whose elements are counted.
    fn choices(&mut self) -> Step<Option<usize>> {
        match self.peek() {
            Some(b'n') => {
                self.literal(b"null")?;
                return Ok(None);
            }
            Some(b'[') => self.at += 1,
            _ => return Err(Stop::Rejected),
        }
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Some(0));
        }
        let mut count = 0;
        loop {
            self.value()?;
            count += 1;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Some(count));
                }
                _ => return Err(Stop::Rejected),
            }
        }
    }

    /// `error` as serde's `Option<&RawValue>` reads it: `null` is none;
    /// anything else is one, whose text must be UTF-8.
    fn error(&mut self) -> Step<bool> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Ok(false);
        }
        let text = self.value_text()?;
        if std::str::from_utf8(text).is_err() {
            return Err(Stop::Rejected);
        }
        Ok(true)
    }

    /// Skips one value by serde_json's grammar for ignored ones (its
    /// `ignore_value`): without recursion, the kind of each open container
    /// a bit of `objects`.
    fn value(&mut self) -> Step {
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
                    if self.peek() == Some(close) {
                        self.at += 1;
                    } else {
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
    fn key(&mut self) -> Step {
        self.expect(b'"')?;
        self.string()?;
        self.expect(b':')
    }

    /// `word`, whose first byte was peeked.
    fn literal(&mut self, word: &[u8]) -> Step {
        if !self.json[self.at..].starts_with(word) {
            return Err(Stop::Rejected);
        }
        self.at += word.len();
        Ok(())
    }

    /// A number after its optional `-`: digits without a leading zero, then
    /// an optional fraction and exponent, each with at least one digit.
    fn number(&mut self) -> Step {
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
    fn digits(&mut self) -> usize {
        let count = self.json[self.at..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        self.at += count;
        count
    }

    /// The rest of a string after its opening quote, through its closing
    /// one; whether it had escapes. No control character, every escape one
    /// of JSON's; UTF-8 is not checked (serde_json does not, for a string
    /// it ignores).
    fn string(&mut self) -> Step<bool> {
        let mut escaped = false;
        loop {
            self.at += special_byte(&self.json[self.at..]).ok_or(Stop::Rejected)?;
            match self.json[self.at] {
                b'"' => {
                    self.at += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return Err(Stop::Rejected),
            }
        }
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

/// Where the first `"`, `\` or control character of `text` is: the bytes
/// that end or interrupt a string's plain run. Eight bytes at a time, as
/// serde_json does it: of the bytes that are one of those, the first sets
/// its high bit in `found` (later ones may be false alarms a borrow made,
/// never earlier ones).
fn special_byte(text: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut chunks = text.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let found = (word.wrapping_sub(ONES * 0x20) & !word)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash);
        if found & HIGH != 0 {
            return Some(offset + (found & HIGH).trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let tail = chunks.remainder();
    let at = tail
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)?;
    Some(offset + at)
}

#[cfg(test)]
#[path = "top_level/tests.rs"]
mod tests;
