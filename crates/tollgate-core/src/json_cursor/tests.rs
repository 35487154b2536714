//! [`Cursor`] against serde_json: where strings end, how text is read,
//! how deep skipped values nest.

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
        assert_eq!(cursor.skip_plain_run(), Err(Malformed), "{length}");
    }
}

/// serde_json's reading of a JSON string as a `String`, or `None` when
/// it rejects it.
fn serde_text(json: &[u8]) -> Option<String> {
    serde_json::from_slice(json).ok()
}

#[test]
fn text_is_read_as_serde_reads_a_string() {
    let cases: [&[u8]; 16] = [
        br#""plain""#,
        br#""a\"b\\c\/d\b\f\n\r\t""#,
        br#""\u00e9\u20AC""#,
        br#""\ud83d\ude00""#,
        "\"caf\u{e9}\"".as_bytes(),
        br#""\ud83d""#,
        br#""\ud83dx""#,
        br#""\ud83d\n""#,
        br#""\ud83d\u0041""#,
        br#""\ude00""#,
        br#""\u12""#,
        br#""\x""#,
        b"\"\xff\"",
        b"\"\xc3\\n\xa9\"",
        b"\"tab\there\"",
        br#""unterminated"#,
    ];
    for json in cases {
        let mut cursor = Cursor::new(json);
        let ours = cursor
            .expect(b'"')
            .and_then(|()| cursor.text())
            .ok()
            .filter(|_| cursor.at_end());
        assert_eq!(
            ours.as_deref(),
            serde_text(json).as_deref(),
            "{:?}",
            String::from_utf8_lossy(json)
        );
    }
}

#[test]
fn values_nest_as_deep_as_they_go() {
    for depth in [1, 63, 64, 65, 128, 129, 1000] {
        let mut json = "[{\"a\":".repeat(depth);
        json.push('1');
        json.push_str(&"}]".repeat(depth));
        let mut cursor = Cursor::new(json.as_bytes());
        assert_eq!(cursor.value(), Ok(()), "{depth}");
        assert!(cursor.at_end());
        // One bracket short: the kinds are kept right at every depth.
        let mut cursor = Cursor::new(&json.as_bytes()[..json.len() - 1]);
        assert_eq!(cursor.value(), Err(Malformed), "{depth}");
        let mut wrong = json.clone().into_bytes();
        wrong[json.len() - 2 * (depth / 2 + 1)] = b']';
        let mut cursor = Cursor::new(&wrong);
        assert_eq!(cursor.value(), Err(Malformed), "{depth}");
    }
}

/// Keys of every length up to three words, each with a special, non-ASCII
/// or invalid byte at every place: read as serde reads an object's keys.
#[test]
fn keys_are_read_as_serde_reads_them() {
    for length in 0..24 {
        for odd in 0..=length {
            for byte in [
                &b"\xc3\xa9"[..],
                b"\xff",
                b"\\n",
                b"\\u00e9",
                b"\"",
                b"\x01",
            ] {
                let mut key = vec![b'k'; length];
                key.splice(
                    odd..odd.min(length),
                    byte.iter().copied().take(usize::from(odd < length) * 8),
                );
                let mut json = b"{\"".to_vec();
                json.extend(&key);
                json.extend_from_slice(b"\":1,\"b\":2}");
                let serde: Option<Vec<String>> =
                    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json)
                        .ok()
                        .map(|map| map.keys().cloned().collect());
                let mut cursor = Cursor::new(&json);
                let mut keys = Vec::new();
                let ours = cursor
                    .expect(b'{')
                    .and_then(|()| {
                        cursor.members(|cursor, key| {
                            keys.push(String::from_utf8(key.to_vec()).expect("UTF-8"));
                            cursor.value()
                        })
                    })
                    .ok()
                    .filter(|()| cursor.at_end())
                    .map(|()| {
                        keys.sort();
                        keys
                    });
                assert_eq!(ours, serde, "{:?}", String::from_utf8_lossy(&json));
            }
        }
    }
}
