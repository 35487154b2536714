//! Byte-level looks at raw SSE events: does one carry content, does one
//! carry usage. No JSON parse: every event of a stream goes through here.

/// What a raw event carries, as far as bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Scan {
    /// A non-empty `content`, `reasoning`, `reasoning_content`, `refusal`,
    /// `arguments` or `text` string: the event is worth a token to an
    /// estimate.
    pub(crate) content: bool,
    /// A `usage` key with a value other than `null`.
    pub(crate) usage: bool,
}

/// Scans the events of one stream ([`scan_from`] the start of each),
/// without looking again at what an event shares with the last: a stream's chunks start alike
/// (`id`, `object`, `created`, `model`, … — most of a small chunk's bytes)
/// before the keys that tell them apart. The same bytes look the same, so
/// an event that starts with the last one's quiet prefix (the bytes before
/// its first content or usage key) is scanned from where that prefix ends.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    /// The quiet prefix of the last event scanned from its start.
    prefix: Vec<u8>,
}

impl Scanner {
    /// What `event` carries.
    pub(crate) fn scan(&mut self, event: &[u8]) -> Scan {
        if !self.prefix.is_empty() && event.starts_with(&self.prefix) {
            return scan_from(event, self.prefix.len()).0;
        }
        let (found, quiet) = scan_from(event, 0);
        self.prefix.clear();
        self.prefix.extend_from_slice(&event[..quiet]);
        found
    }
}

/// Looks at every `:` of the event once: a JSON key is a quoted name
/// followed by `:`, which text inside a string cannot fake (its quotes are
/// escaped), so a key found this way is a key. Colons are rarer than quotes
/// in a chunk, which makes them the cheaper anchor. They are found eight
/// bytes at a time in one pass ([`colons_in`]): a chunk has a dozen keys,
/// and a search started afresh at each cost more than the look at it.
///
/// Starts at `skip`, below which no colon ends a content or usage key;
/// also returns where the first such key's colon is (the length of the
/// event's quiet prefix).
fn scan_from(event: &[u8], skip: usize) -> (Scan, usize) {
    let mut found = Scan::default();
    let mut quiet = event.len();
    let mut base = skip;
    while base < event.len() {
        let mut colons = colons_in(event, base);
        while colons != 0 {
            let colon = base + colons.trailing_zeros() as usize / 8;
            colons &= colons - 1;
            if event[colon] != b':' {
                continue;
            }
            if let Some(done) = look_at_key(event, colon, &mut found) {
                quiet = quiet.min(colon);
                if done {
                    return (found, quiet);
                }
            }
        }
        base += 8;
    }
    (found, quiet)
}

/// The high bit of each byte of the eight from `base` that is a `:` —
/// and perhaps of a byte after one (the borrow of the subtraction), which
/// the caller checks. Bytes past the end read as zero.
#[inline]
fn colons_in(event: &[u8], base: usize) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    let mut word = [0; 8];
    match event.get(base..base + 8) {
        Some(bytes) => word.copy_from_slice(bytes),
        None => word[..event.len() - base].copy_from_slice(&event[base..]),
    }
    let diff = u64::from_le_bytes(word) ^ (ONES * u64::from(b':'));
    diff.wrapping_sub(ONES) & !diff & (ONES << 7)
}

/// Looks at the key the colon at `colon` may end: `None` when it is not
/// one still looked for; else whether both findings are in (nothing more
/// to look for).
#[inline]
fn look_at_key(event: &[u8], colon: usize, found: &mut Scan) -> Option<bool> {
    let name = trim_ws_end(&event[..colon]).strip_suffix(b"\"")?;
    let usage = match name.last() {
        Some(b'e') if !found.usage && name.ends_with(b"\"usage") => true,
        Some(&last) if !found.content && is_content_key(name, last) => false,
        _ => return None,
    };
    let value = trim_ws_start(&event[colon + 1..]);
    if usage {
        found.usage = !value.starts_with(b"null");
    } else {
        // A string with at least one character.
        found.content = value.len() >= 2 && value[0] == b'"' && value[1] != b'"';
    }
    Some(found.content && found.usage)
}

/// Whether `name` (after its opening quote, whose last byte is `last`)
/// is a key whose non-empty string value is generated text: `content`,
/// `reasoning`, `reasoning_content`, `refusal`, `arguments` or `text`.
/// Told apart by their last byte first: most keys of a chunk are none.
#[inline]
fn is_content_key(name: &[u8], last: u8) -> bool {
    match last {
        b't' => {
            name.ends_with(b"\"content")
                || name.ends_with(b"\"text")
                || name.ends_with(b"\"reasoning_content")
        }
        b'g' => name.ends_with(b"\"reasoning"),
        b'l' => name.ends_with(b"\"refusal"),
        b's' => name.ends_with(b"\"arguments"),
        _ => false,
    }
}

fn is_ws(byte: &u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn trim_ws_start(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().take_while(|b| is_ws(b)).count();
    &bytes[n..]
}

fn trim_ws_end(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().rev().take_while(|b| is_ws(b)).count();
    &bytes[..bytes.len() - n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(event: &[u8]) -> Scan {
        scan_from(event, 0).0
    }

    fn scan_str(event: &str) -> (bool, bool) {
        let s = scan(event.as_bytes());
        (s.content, s.usage)
    }

    #[test]
    fn content_bearing_events() {
        let yes = [
            r#"data: {"choices":[{"delta":{"content":"Paris"}}],"usage":null}"#,
            r#"data: {"choices":[{"delta":{"role":"assistant","content" : "x"}}]}"#,
            r#"data: {"choices":[{"delta":{"content":"","reasoning":"Let me think"}}]}"#,
            r#"data: {"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#,
            r#"data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\""}}]}}]}"#,
            r#"data: {"choices":[{"delta":{"refusal":"no"}}]}"#,
            r#"data: {"choices":[{"text":"legacy"}]}"#,
        ];
        for event in yes {
            assert!(scan_str(event).0, "{event}");
        }
        let no = [
            r#"data: {"choices":[{"delta":{"role":"assistant","content":"","refusal":null}}],"usage":null}"#,
            r#"data: {"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            r#"data: {"choices":[{"delta":{"content":null}}]}"#,
            "data: [DONE]",
            ": OPENROUTER PROCESSING",
            // Keys spelled inside strings are not keys.
            r#"data: {"choices":[{"delta":{"role":"content"}}],"x":"\"content\":\"y\""}"#,
        ];
        for event in no {
            assert!(!scan_str(event).0, "{event}");
        }
    }

    #[test]
    fn usage_only_when_not_null() {
        assert!(scan_str(r#"data: {"choices":[],"usage":{"prompt_tokens":1}}"#).1);
        assert!(scan_str(r#"data: {"choices":[],"usage" :	{"prompt_tokens":1}}"#).1);
        assert!(!scan_str(r#"data: {"choices":[],"usage":null}"#).1);
        assert!(!scan_str(r#"data: {"choices":[{"delta":{"content":"\"usage\":{}"}}]}"#).1);
        assert!(!scan_str(r#"data: {"choices":[{"delta":{"content":"usage"}}]}"#).1);
        // Both at once.
        assert_eq!(
            scan_str(
                r#"data: {"choices":[{"delta":{"content":"hi"}}],"usage":{"prompt_tokens":1}}"#
            ),
            (true, true)
        );
    }

    /// Every colon is looked at once, wherever it falls in the eight-byte
    /// words: keys at every offset, after colons and semicolons (the
    /// bytes a borrow could flag), and at the very end.
    #[test]
    fn keys_are_found_at_every_offset() {
        for pad in 0..24 {
            for filler in [&b"x"[..], b":", b";", b":;", b" "] {
                let mut event = b"data: {\"a\":\"".to_vec();
                event.extend(filler.iter().cycle().take(pad));
                event.extend_from_slice(br#"","content":"y","usage":{"n":1}}"#);
                let found = scan(&event);
                let shown = String::from_utf8_lossy(&event);
                assert!(found.content && found.usage, "{shown}");
                let cut = &event[..event.len() - 8];
                assert_eq!(
                    scan(cut),
                    Scan {
                        content: true,
                        usage: true
                    },
                    "{shown}"
                );
                let key_last = &event[..event.len() - 13];
                assert!(scan(key_last).content && !scan(key_last).usage, "{shown}");
            }
        }
    }

    /// A scanner finds in each event what a scan from its start finds,
    /// whatever it scanned before: events that share a start up to, into
    /// and past their first content or usage key, cut anywhere.
    #[test]
    fn a_scanner_finds_what_a_scan_finds() {
        let head = r#"data: {"id":"c1","object":"chunk","choices":[{"index":0,"delta":{"#;
        let tails = [
            r#""role":"assistant","content":"","refusal":null}}],"usage":null}"#,
            r#""content":"Hi"}}],"usage":null}"#,
            r#""content":""}}],"usage":{"prompt_tokens":1}}"#,
            r#""contents":"Hi"}}]}"#,
            r#""reasoning":"hm","content":"x"}}]}"#,
            r#"}}],"usage":{"prompt_tokens":1}}"#,
            r#""content" : "x"}}]}"#,
        ];
        let mut events: Vec<Vec<u8>> = Vec::new();
        for tail in tails {
            let event = format!("{head}{tail}\n\n").into_bytes();
            for cut in (0..event.len()).step_by(7) {
                events.push(event[..cut].to_vec());
            }
            events.push(event);
        }
        for first in &events {
            for second in &events {
                let mut scanner = Scanner::default();
                scanner.scan(first);
                assert_eq!(
                    scanner.scan(second),
                    scan(second),
                    "{} then {}",
                    String::from_utf8_lossy(first),
                    String::from_utf8_lossy(second)
                );
            }
        }
    }
}
