//! How deep a JSON text nests, counted without parsing it: a request that
//! nests deeper than the parser's limit is refused before serde recurses.

/// Whether arrays and objects in `json` nest deeper than `limit`; brackets
/// inside strings do not count. Malformed JSON is left to the parser.
pub(crate) fn nests_deeper_than(json: &[u8], limit: usize) -> bool {
    // The depth is at most the number of `[` and `{` bytes: most requests
    // have fewer than the limit, counted without walking their strings (6%
    // of their parse, measured; the walk costs about a third of it).
    if openers(json) <= limit {
        return false;
    }
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = json.get(at) {
        match byte {
            b'"' => {
                // To the closing quote: the first one not escaped. Most of a
                // request's bytes are in strings, skipped a word at a time.
                at += 1;
                loop {
                    let Some(offset) = json
                        .get(at..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    else {
                        return false;
                    };
                    at += offset;
                    if json[at] == b'"' {
                        break;
                    }
                    // The backslash and the byte it escapes.
                    at += 2;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

/// How many `[` and `{` bytes `json` holds, in or out of strings: counted
/// in blocks small enough for a byte-wide count, which compiles to vector
/// instructions.
pub(crate) fn openers(json: &[u8]) -> usize {
    json.chunks(255)
        .map(|block| {
            // `[` and `{` differ only in the bit 0x20; no other byte ORs to `{`.
            usize::from(
                block
                    .iter()
                    .fold(0u8, |n, &b| n + u8::from((b | 0x20) == b'{')),
            )
        })
        .sum()
}
