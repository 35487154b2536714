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

/// Looks at every `:` of the event once: a JSON key is a quoted name
/// followed by `:`, which text inside a string cannot fake (its quotes are
/// escaped), so a key found this way is a key. Colons are rarer than quotes
/// in a chunk, which makes them the cheaper anchor.
pub(crate) fn scan(event: &[u8]) -> Scan {
    let mut found = Scan::default();
    let mut at = 0;
    while let Some(offset) = memchr::memchr(b':', &event[at..]) {
        let colon = at + offset;
        at = colon + 1;
        let Some(name) = trim_ws_end(&event[..colon]).strip_suffix(b"\"") else {
            continue;
        };
        let usage = match name.last() {
            Some(b'e') if !found.usage && name.ends_with(b"\"usage") => true,
            Some(b't' | b'g' | b'l' | b's') if !found.content => {
                if !CONTENT_KEYS.iter().any(|key| name.ends_with(key)) {
                    continue;
                }
                false
            }
            _ => continue,
        };
        let value = trim_ws_start(&event[at..]);
        if usage {
            found.usage = !value.starts_with(b"null");
        } else {
            // A string with at least one character.
            found.content = value.len() >= 2 && value[0] == b'"' && value[1] != b'"';
        }
        if found.content && found.usage {
            break;
        }
    }
    found
}

/// Keys whose non-empty string value is generated text, each with its
/// opening quote.
const CONTENT_KEYS: [&[u8]; 6] = [
    b"\"content",
    b"\"reasoning",
    b"\"reasoning_content",
    b"\"refusal",
    b"\"arguments",
    b"\"text",
];

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
}
