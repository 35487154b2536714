//! Finding what to redact: configured secrets, and anything shaped like a
//! credential, in a text as it stands and as it reads once decoded.
//!
//! A text is searched in several *readings*: the text itself, then the text
//! with its escapes decoded (`%XX`, JSON's `\"`, `\/`, `\uXXXX`, `\xXX`),
//! then that decoded again, and so on, so that a key URL-encoded inside a
//! JSON string is found too. Every byte of a reading remembers the range of
//! the original text it came from, so a match in any reading redacts the
//! original bytes it was written as. Control characters a decoding produces
//! are left out of the reading, so that `SEC\u0000RET` reads as `SECRET`.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memmem::{self, Finder};

/// Decoded readings searched besides the text itself: enough for a key
/// URL-encoded in a JSON string that is itself escaped in another.
const MAX_DECODINGS: usize = 3;

/// Prefixes of well-known credentials: OpenAI (`sk-`, `sk-proj-`),
/// OpenRouter (`sk-or-v1-`), Anthropic (`sk-ant-`), Stripe-style `sk_`/`pk_`/
/// `rk_`, AWS access key ids (`AKIA`, `ASIA`), Google API keys (`AIza`),
/// GitHub, GitLab, Slack and Hugging Face tokens.
const KEY_PREFIXES: &[&[u8]] = &[
    b"sk-",
    b"sk_",
    b"pk-",
    b"pk_",
    b"rk-",
    b"rk_",
    b"key-",
    b"AKIA",
    b"ASIA",
    b"AIza",
    b"ghp_",
    b"gho_",
    b"ghs_",
    b"ghu_",
    b"github_pat_",
    b"glpat-",
    b"xox",
    b"hf_",
];

/// The bytes a [`KEY_PREFIXES`] entry starts with: most bytes of a run are
/// passed over with one lookup.
const STARTS_PREFIX: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < KEY_PREFIXES.len() {
        table[KEY_PREFIXES[i][0] as usize] = true;
        i += 1;
    }
    table
};

/// A prefixed token that starts a word is a key from this length on (the
/// prefix included): `sk-` and 9 more characters.
const MIN_PREFIXED_LEN: usize = 12;

/// The shortest JSON Web Token header taken for one (`{"alg":"none"}` is
/// 20 base64url characters).
const MIN_JWT_HEADER: usize = 16;

/// What follows `ya29.` in a Google access token, at least (real ones are
/// some two hundred characters).
const MIN_GOOGLE_TOKEN_REST: usize = 8;

/// A prefix glued to the end of other letters (`apikeysk-…`) marks a key only
/// when this much key-like text follows it: prose has words such as
/// `task-specific`, keys are long and random.
const MIN_GLUED_REST: usize = 16;

/// A run of `[A-Za-z0-9_-]` this long, with letters and digits, is a key, a
/// hash or an id more often than a word.
const LONG_RUN: usize = 32;

/// A run of base64 characters (`+` and `/` included) this long, with
/// upper case, lower case and digits: an AWS secret key, a signature.
const LONG_BASE64_RUN: usize = 40;

/// A value labelled as a credential (`api_key=…`, `"token": "…"`) is one
/// from this length on, when it mixes cases or has a digit.
const MIN_LABELLED_LEN: usize = 8;

/// Identifier endings that label the value after a `:` or `=` as a
/// credential: `api_key`, `x-api-key`, `access_token`, `client_secret`,
/// `Authorization`...
const LABELS: &[&[u8]] = &[
    b"key",
    b"token",
    b"secret",
    b"password",
    b"passwd",
    b"pwd",
    b"auth",
    b"authorization",
    b"credential",
    b"credentials",
    b"signature",
];

/// One reading of the text: its bytes, and for each byte the range of the
/// original text it came from (`None`: the reading is the text itself).
struct Reading<'a> {
    bytes: Cow<'a, [u8]>,
    origin: Option<Vec<Range<u32>>>,
}

impl Reading<'_> {
    fn origin(&self, i: usize) -> Range<u32> {
        match &self.origin {
            Some(origin) => origin[i].clone(),
            // Texts are bounded well below `u32::MAX` by the callers.
            None => i as u32..i as u32 + 1,
        }
    }

    /// The original text's range behind `range` of this reading.
    fn original(&self, range: Range<usize>) -> Range<usize> {
        let start = self.origin(range.start).start as usize;
        let end = self.origin(range.end - 1).end as usize;
        start..end
    }
}

/// Every range of `text` to redact, sorted and merged: each occurrence of a
/// secret — `prepared` (searchers built once, for the configured secrets)
/// or `ad_hoc` (the request's credential) — and each key-shaped token, URL
/// or labelled credential, in any reading of the text.
pub(super) fn find<'s>(
    text: &[u8],
    prepared: impl Iterator<Item = &'s Finder<'static>> + Clone,
    ad_hoc: impl Iterator<Item = &'s [u8]> + Clone,
) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut reading = Reading {
        bytes: Cow::Borrowed(text),
        origin: None,
    };
    let mut decodings = 0;
    loop {
        let mut found = Vec::new();
        let bytes = &reading.bytes[..];
        // A secret longer than the text cannot be in it: a short header
        // costs no search at all.
        for finder in prepared.clone().filter(|f| fits(f.needle(), bytes)) {
            let len = finder.needle().len();
            found.extend(finder.find_iter(bytes).map(|at| at..at + len));
        }
        for secret in ad_hoc.clone().filter(|s| fits(s, bytes)) {
            found.extend(memmem::find_iter(bytes, secret).map(|at| at..at + secret.len()));
        }
        shapes(&reading.bytes, &mut found);
        spans.extend(found.into_iter().map(|range| reading.original(range)));
        if decodings == MAX_DECODINGS {
            break;
        }
        match decode(&reading) {
            Some(next) => reading = next,
            None => break,
        }
        decodings += 1;
    }
    merge(spans)
}

fn fits(needle: &[u8], haystack: &[u8]) -> bool {
    !needle.is_empty() && needle.len() <= haystack.len()
}

fn merge(mut spans: Vec<Range<usize>>) -> Vec<Range<usize>> {
    spans.sort_unstable_by_key(|range| range.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            // Touching spans merge too: two markers side by side say no more.
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// The next reading: every escape decoded once, or `None` when there is none.
fn decode(reading: &Reading<'_>) -> Option<Reading<'static>> {
    let bytes = &reading.bytes[..];
    // Nothing to decode without an escape character.
    memchr::memchr2(b'%', b'\\', bytes)?;
    let mut out = Vec::with_capacity(bytes.len());
    let mut origin = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        match escape_at(bytes, i) {
            Some((decoded, used)) => {
                changed = true;
                let from = reading.origin(i).start..reading.origin(i + used - 1).end;
                for &byte in decoded.as_slice() {
                    out.push(byte);
                    origin.push(from.clone());
                }
                i += used;
            }
            None => {
                out.push(bytes[i]);
                origin.push(reading.origin(i));
                i += 1;
            }
        }
    }
    changed.then_some(Reading {
        bytes: Cow::Owned(out),
        origin: Some(origin),
    })
}

/// The bytes an escape stands for (none for a control character), at most
/// four.
struct Decoded {
    buf: [u8; 4],
    len: usize,
}

impl Decoded {
    fn byte(byte: u8) -> Self {
        let len = usize::from(!(byte < 0x20 || byte == 0x7f));
        Decoded {
            buf: [byte, 0, 0, 0],
            len,
        }
    }

    fn char(c: char) -> Self {
        let mut buf = [0; 4];
        let len = if super::is_hidden(c) {
            0
        } else {
            c.encode_utf8(&mut buf).len()
        };
        Decoded { buf, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The escape starting at `i`, if there is one: what it decodes to, and its
/// length.
fn escape_at(bytes: &[u8], i: usize) -> Option<(Decoded, usize)> {
    match bytes[i] {
        b'%' => Some((Decoded::byte(hex(bytes.get(i + 1..i + 3)?)? as u8), 3)),
        b'\\' => match *bytes.get(i + 1)? {
            c @ (b'"' | b'\\' | b'/' | b'\'') => Some((Decoded::byte(c), 2)),
            b'b' | b'f' | b'n' | b'r' | b't' => Some((Decoded::byte(0), 2)),
            b'x' => Some((Decoded::byte(hex(bytes.get(i + 2..i + 4)?)? as u8), 4)),
            b'u' => {
                let high = hex(bytes.get(i + 2..i + 6)?)?;
                if !(0xD800..0xDC00).contains(&high) {
                    return Some((Decoded::char(char::from_u32(high)?), 6));
                }
                // A surrogate pair: `\uD83D\uDE00`.
                if bytes.get(i + 6..i + 8)? != b"\\u" {
                    return None;
                }
                let low = hex(bytes.get(i + 8..i + 12)?)?;
                if !(0xDC00..0xE000).contains(&low) {
                    return None;
                }
                let c = char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?;
                Some((Decoded::char(c), 12))
            }
            _ => None,
        },
        _ => None,
    }
}

fn hex(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |value, &digit| {
        Some(value * 16 + char::from(digit).to_digit(16)?)
    })
}

/// Key bytes: what API keys are made of.
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 6750's `b64token`: what a bearer token is made of.
fn is_token_byte(b: u8) -> bool {
    is_key_byte(b) || matches!(b, b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Base64 (standard and URL-safe), padding aside.
fn is_base64_byte(b: u8) -> bool {
    is_key_byte(b) || matches!(b, b'+' | b'/')
}

/// Maximal runs of bytes matching `class`.
fn runs(text: &[u8], class: fn(u8) -> bool) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < text.len() && !class(text[i]) {
            i += 1;
        }
        if i == text.len() {
            return None;
        }
        let start = i;
        while i < text.len() && class(text[i]) {
            i += 1;
        }
        Some(start..i)
    })
}

/// Adds the ranges of `text` that look like credentials.
fn shapes(text: &[u8], out: &mut Vec<Range<usize>>) {
    for run in runs(text, is_key_byte) {
        if let Some(range) = key_in_run(text, run) {
            out.push(range);
        }
    }
    for run in runs(text, is_base64_byte) {
        let bytes = &text[run.clone()];
        if bytes.len() >= LONG_BASE64_RUN
            && bytes.iter().any(u8::is_ascii_uppercase)
            && bytes.iter().any(u8::is_ascii_lowercase)
            && bytes.iter().any(u8::is_ascii_digit)
        {
            // With its padding.
            let mut end = run.end;
            while end < text.len() && end - run.end < 2 && text[end] == b'=' {
                end += 1;
            }
            out.push(run.start..end);
        }
    }
    bearer_tokens(text, out);
    json_web_tokens(text, out);
    google_access_tokens(text, out);
    labelled_values(text, out);
    urls(text, out);
}

/// JSON Web Tokens (Microsoft Entra ID's and other OAuth access tokens):
/// `eyJ` (base64url of `{"`) then header, payload and signature joined by
/// dots, redacted whole. The rules above would take only the random-looking
/// header, leaving the rest of a token a configured secret no longer
/// matches once the header is gone (a classifier redacts by shape before
/// the gateway knows its secrets).
fn json_web_tokens(text: &[u8], out: &mut Vec<Range<usize>>) {
    const HEADER: &[u8] = b"eyJ";
    for run in runs(text, |b| is_key_byte(b) || b == b'.') {
        let bytes = &text[run.clone()];
        let Some(at) = memmem::find(bytes, HEADER) else {
            continue;
        };
        let token = &bytes[at..];
        let mut parts = token.split(|&b| b == b'.');
        // A real header (`{"alg":…}`) is twenty-odd characters at least.
        let header = parts.next().map_or(0, <[u8]>::len);
        let rest: Vec<&[u8]> = parts.collect();
        if header >= MIN_JWT_HEADER && rest.len() >= 2 && rest[..2].iter().all(|p| !p.is_empty()) {
            out.push(run.start + at..run.end);
        }
    }
}

/// Google OAuth2 access tokens (Vertex AI's, obtained at run time, so no
/// configured secret): `ya29.` and the token, dots included, redacted
/// whole. The word rules split at the dot and would leave a short token's
/// tail, which is all a caller needs.
fn google_access_tokens(text: &[u8], out: &mut Vec<Range<usize>>) {
    const PREFIX: &[u8] = b"ya29.";
    for run in runs(text, |b| is_key_byte(b) || b == b'.') {
        let bytes = &text[run.clone()];
        for at in memmem::find_iter(bytes, PREFIX) {
            // `ya29.` starts a word: not the tail of another one.
            let starts_word = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
            if starts_word && bytes.len() - at - PREFIX.len() >= MIN_GOOGLE_TOKEN_REST {
                out.push(run.start + at..run.end);
                break;
            }
        }
    }
}

/// The key in a run of key bytes, if there is one: the whole run when it is
/// long and mixes letters and digits, else from a known prefix to the end.
fn key_in_run(text: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    let bytes = &text[run.clone()];
    if bytes.len() >= LONG_RUN
        && bytes.iter().any(u8::is_ascii_digit)
        && bytes.iter().any(u8::is_ascii_alphabetic)
    {
        return Some(run);
    }
    if bytes.len() < MIN_PREFIXED_LEN {
        return None;
    }
    // The first prefix that marks a key: one that starts the run, or one
    // glued to other text with enough random-looking text after it.
    let start = (0..bytes.len())
        .filter(|&at| STARTS_PREFIX[usize::from(bytes[at])])
        .find(|&at| {
            KEY_PREFIXES.iter().any(|prefix| {
                let Some(rest) = bytes[at..].strip_prefix(*prefix) else {
                    return false;
                };
                at == 0 || (rest.len() >= MIN_GLUED_REST && looks_random(rest))
            })
        })?;
    Some(run.start + start..run.end)
}

/// Has a digit, or both cases: random, not a word.
fn looks_random(bytes: &[u8]) -> bool {
    bytes.iter().any(u8::is_ascii_digit)
        || (bytes.iter().any(u8::is_ascii_uppercase) && bytes.iter().any(u8::is_ascii_lowercase))
}

/// Separators between a label and its value: `: `, `="`, `":"`.
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b':' | b'=' | b'"' | b'\'')
}

/// How far a value may start after its label or scheme.
const MAX_SEPARATORS: usize = 6;

/// The token after `at`, past a few separators.
fn value_after(text: &[u8], at: usize) -> Option<Range<usize>> {
    let mut start = at;
    while start < text.len() && start - at < MAX_SEPARATORS && is_separator(text[start]) {
        start += 1;
    }
    let mut end = start;
    while end < text.len() && is_token_byte(text[end]) {
        end += 1;
    }
    (end > start).then_some(start..end)
}

/// `Bearer <token>`, case-insensitively, the token whatever its shape.
fn bearer_tokens(text: &[u8], out: &mut Vec<Range<usize>>) {
    const BEARER: &[u8] = b"bearer";
    let mut from = 0;
    while let Some(found) = find_ignore_case(&text[from..], BEARER) {
        let at = from + found;
        from = at + BEARER.len();
        let starts_word = at == 0 || !text[at - 1].is_ascii_alphanumeric();
        let ends_word = text.get(from).is_some_and(|&b| is_separator(b));
        if starts_word
            && ends_word
            && let Some(token) = value_after(text, from)
        {
            out.push(token);
        }
    }
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

/// The value after `api_key=`, `"token": "`, `x-api-key:`... when it is long
/// enough and random-looking to be a credential.
fn labelled_values(text: &[u8], out: &mut Vec<Range<usize>>) {
    for at in memchr::memchr2_iter(b':', b'=', text) {
        // The identifier before the separator, past a closing quote.
        let mut end = at;
        while end > 0 && matches!(text[end - 1], b'"' | b'\'' | b' ') && at - end < 2 {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && is_key_byte(text[start - 1]) {
            start -= 1;
        }
        let label = &text[start..end];
        let labelled = LABELS.iter().any(|suffix| {
            label.len() >= suffix.len()
                && label[label.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        });
        if !labelled {
            continue;
        }
        if let Some(value) = value_after(text, at) {
            let bytes = &text[value.clone()];
            if bytes.len() >= MIN_LABELLED_LEN && looks_random(bytes) {
                out.push(value);
            }
        }
    }
}

/// Every URL (`scheme://…`), up to the next space or quote: URLs name
/// internal hosts and carry keys in their query.
fn urls(text: &[u8], out: &mut Vec<Range<usize>>) {
    let scheme_ends = memchr::memchr_iter(b':', text).filter(|&at| text[at..].starts_with(b"://"));
    for at in scheme_ends {
        let mut start = at;
        while start > 0
            && (text[start - 1].is_ascii_alphanumeric() || b"+.-".contains(&text[start - 1]))
        {
            start -= 1;
        }
        let mut end = at + 3;
        while end < text.len()
            && !text[end].is_ascii_whitespace()
            && !b"\"'<>`\\".contains(&text[end])
        {
            end += 1;
        }
        out.push(start..end);
    }
}
