//! Strings with escapes, decoded as serde decodes them: the slow path of
//! [`Cursor::text`], off the hot one.

use super::{Cursor, Malformed, Step};

impl Cursor<'_> {
    /// [`Cursor::text`] from the first special byte of a string that
    /// started at `start`.
    #[cold]
    #[inline(never)]
    pub(super) fn text_with_escapes(&mut self, start: usize) -> Step<String> {
        let mut text = Vec::new();
        let mut run = start;
        loop {
            match self.json.get(self.at) {
                Some(b'"') => {
                    text.extend_from_slice(&self.json[run..self.at]);
                    self.at += 1;
                    // The decoded escapes are whole characters: the text is
                    // UTF-8 if the runs between them are.
                    return String::from_utf8(text).map_err(|_| Malformed);
                }
                Some(b'\\') => {
                    text.extend_from_slice(&self.json[run..self.at]);
                    self.decode_escape(&mut text)?;
                    run = self.at;
                }
                _ => return Err(Malformed),
            }
            self.skip_plain_run()?;
        }
    }

    /// Decodes the escape at the cursor (its backslash) into `text`.
    fn decode_escape(&mut self, text: &mut Vec<u8>) -> Step {
        let byte = match self.json.get(self.at + 1) {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let unit = self.utf16_unit()?;
                let code = match unit {
                    0xd800..=0xdbff => {
                        // A leading surrogate: its trailing half must follow.
                        if self.json.get(self.at + 1) != Some(&b'u') {
                            return Err(Malformed);
                        }
                        let low = self.utf16_unit()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(Malformed);
                        }
                        0x1_0000 + ((u32::from(unit) - 0xd800) << 10) + (u32::from(low) - 0xdc00)
                    }
                    0xdc00..=0xdfff => return Err(Malformed),
                    _ => u32::from(unit),
                };
                let character = char::from_u32(code).ok_or(Malformed)?;
                text.extend_from_slice(character.encode_utf8(&mut [0; 4]).as_bytes());
                return Ok(());
            }
            _ => return Err(Malformed),
        };
        text.push(byte);
        self.at += 2;
        Ok(())
    }

    /// The four hex digits of a `\u` escape at the cursor (its backslash),
    /// read.
    fn utf16_unit(&mut self) -> Step<u16> {
        if self.json.get(self.at) != Some(&b'\\') {
            return Err(Malformed);
        }
        let hex = self.json.get(self.at + 2..self.at + 6).ok_or(Malformed)?;
        let mut unit = 0u16;
        for &digit in hex {
            let value = char::from(digit).to_digit(16).ok_or(Malformed)?;
            unit = (unit << 4) | value as u16;
        }
        self.at += 6;
        Ok(unit)
    }
}
