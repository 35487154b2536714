//! The encoded forms of a secret: how it reads URL-encoded, JSON-escaped,
//! or both.

/// Every form of `secret` other than itself: URL-encoded (upper- and
/// lower-case hex), JSON-escaped (with and without `\/`), the JSON-escaped
/// form URL-encoded, and every character as `\uXXXX`. (The decoded
/// readings find partial and nested encodings; these are matched as written
/// because a stray `%` or `\` just before one can make the text decode
/// differently.) Each form has a `%` or a `\` in it, so a text with
/// neither holds none of them.
pub(super) fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let escaped = json(secret, false);
    let mut forms = vec![
        url(secret, false),
        url(secret, true),
        url(&escaped, false),
        url(&escaped, true),
        json(secret, true),
        escaped,
        unicode(secret, false),
        unicode(secret, true),
    ];
    forms.retain(|form| form != secret);
    forms.sort_unstable();
    forms.dedup();
    forms
}

/// Percent-encodes every byte but RFC 3986's unreserved ones.
fn url(bytes: &[u8], lower: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if lower {
        b"0123456789abcdef"
    } else {
        b"0123456789ABCDEF"
    };
    let mut out = Vec::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                digits[usize::from(b >> 4)],
                digits[usize::from(b & 15)],
            ]);
        }
    }
    out
}

/// Escapes as in a JSON string: `"`, `\` and control characters, and `/`
/// when `slash` (some encoders write `\/`).
fn json(bytes: &[u8], slash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for &b in bytes {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'/' if slash => out.extend_from_slice(b"\\/"),
            0..0x20 => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

/// Every character as a JSON `\uXXXX` escape (surrogate pairs beyond the
/// BMP).
fn unicode(bytes: &[u8], lower: bool) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(bytes.len() * 6);
    for unit in text.encode_utf16() {
        if lower {
            out.push_str(&format!("\\u{unit:04x}"));
        } else {
            out.push_str(&format!("\\u{unit:04X}"));
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_has_an_escape() {
        for secret in [&b"sk-proj-AbC_123-xyz"[..], br#"p@ss/w"rd\"#] {
            for form in forms(secret) {
                assert!(form.iter().any(|b| b"%\\".contains(b)), "{form:?}");
            }
        }
        // A key of letters, digits, `-` and `_` is only `\u`-escaped.
        assert_eq!(forms(b"sk-proj-AbC_123-xyz").len(), 2);
    }

    #[test]
    fn special_characters_give_each_form() {
        let forms = forms(br#"p@ss/w"rd"#);
        for form in [
            &b"p%40ss%2Fw%22rd"[..],
            b"p%40ss%2fw%22rd",
            br#"p@ss/w\"rd"#,
            br#"p@ss\/w\"rd"#,
            b"p%40ss%2Fw%5C%22rd",
        ] {
            assert!(
                forms.iter().any(|f| f == form),
                "{}",
                String::from_utf8_lossy(form)
            );
        }
    }
}
