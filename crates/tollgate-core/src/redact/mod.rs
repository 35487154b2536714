//! [`Redactor`]: what makes upstream text safe to show a client.
//!
//! Upstream error texts help a client fix its request ("maximum context
//! length is 8192 tokens"), but a provider may echo the credentials it was
//! sent — `Incorrect API key provided: sk-…`, `{"api_key":"sk-…"}`,
//! `…/internal/sk-…` — and none of them may leave the gateway. Every text
//! that came from upstream and can reach a client (error messages, a
//! stream's error event, forwarded headers) goes through a [`Redactor`]
//! first, which replaces with `[redacted]`:
//!
//! - every configured secret ([`Secrets`]: upstream keys, the master key,
//!   virtual keys, header values a deployment sends) and the credential the
//!   request itself presented, by exact match — wherever it stands, glued to
//!   other text or not, and however it is escaped: as written, URL-encoded,
//!   JSON-escaped, or nested (URL-encoded inside a JSON string);
//! - anything shaped like a credential, found anywhere in the text, not only
//!   as a whole word: known key prefixes (`sk-`, `sk-proj-`, `sk-or-v1-`,
//!   `sk-ant-`, `AKIA`/`ASIA`, `AIza`, `ghp_`...), `Bearer <token>`, values
//!   labelled as keys (`api_key=…`, `"token": "…"`), long random-looking
//!   runs, and URLs (they name internal hosts and carry keys in queries).
//!
//! Control and invisible characters are dropped before the search, so that
//! neither hides a key from it; a message is cut at [`MAX_MESSAGE_LEN`]
//! bytes, after redaction, so that a cut never leaves part of a key.
//!
//! Redaction is for error texts and headers only: content of a healthy
//! stream is never scanned.
//!
//! # Example
//!
//! ```
//! use tollgate_core::{Redactor, Secrets};
//!
//! let secrets: Secrets = ["upstream-token-4f9a8b"].into_iter().collect();
//! let redactor = Redactor::new(secrets);
//! let text = r#"bad auth {"api_key":"upstream-token-4f9a8b"} from https://10.0.0.7/v1, key=sk-or-v1-0123456789abcdef"#;
//! assert_eq!(
//!     redactor.redact(text),
//!     r#"bad auth {"api_key":"[redacted]"} from [redacted] key=[redacted]"#,
//! );
//! ```

mod encode;
mod scan;

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use memchr::memmem::Finder;

use crate::failure::Failure;

/// The longest message passed on to a client, in bytes.
pub const MAX_MESSAGE_LEN: usize = 512;

/// The shortest secret matched exactly, in bytes: a shorter one would
/// redact ordinary words (and cannot be a credential worth the name).
pub const MIN_SECRET_LEN: usize = 6;

/// The most of a text searched, in bytes; what lies beyond is dropped (a
/// message is cut far sooner).
const MAX_SCAN_LEN: usize = 64 * 1024;

/// What a redacted range becomes.
const MARKER: &str = "[redacted]";

/// The secrets a gateway knows: every credential its configuration holds
/// (upstream keys, the master key, virtual keys, header values it sends
/// upstream). Filled while the configuration loads, then shared: cloning is
/// cheap. Its `Debug` shows how many there are, never one of them.
///
/// Each secret is kept with its encoded forms (URL-encoded, JSON-escaped,
/// both), so that a secret written encoded is matched as written even where
/// the text around it would decode differently. Secrets shorter than
/// [`MIN_SECRET_LEN`] are not kept (see there).
#[derive(Clone, Default)]
pub struct Secrets {
    values: Arc<[Secret]>,
}

/// One secret, ready to search for: its text, then its encoded forms (each
/// with a `%` or a `\\`).
type Secret = Box<[Finder<'static>]>;

impl Secrets {
    /// No secrets.
    pub fn new() -> Self {
        Secrets::default()
    }

    /// Adds a secret; returns whether it was kept (it is not when shorter
    /// than [`MIN_SECRET_LEN`], or already there).
    pub fn insert(&mut self, secret: &str) -> bool {
        let secret = secret.as_bytes();
        if secret.len() < MIN_SECRET_LEN || self.values.iter().any(|s| s[0].needle() == secret) {
            return false;
        }
        let forms: Secret = std::iter::once(secret.to_vec())
            .chain(encode::forms(secret))
            .map(|form| Finder::new(&form).into_owned())
            .collect();
        let mut values = self.values.to_vec();
        values.push(forms);
        self.values = values.into();
        true
    }

    /// How many secrets there are.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every secret; in every form too when `escaped` (the text has a `%`
    /// or a `\\`: without one, no encoded form can be in it).
    fn finders(&self, escaped: bool) -> impl Iterator<Item = &Finder<'static>> + Clone {
        let forms = if escaped { usize::MAX } else { 1 };
        self.values
            .iter()
            .flat_map(move |secret| secret.iter().take(forms))
    }
}

impl<S: AsRef<str>> FromIterator<S> for Secrets {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut secrets = Secrets::new();
        secrets.extend(iter);
        secrets
    }
}

impl<S: AsRef<str>> Extend<S> for Secrets {
    fn extend<I: IntoIterator<Item = S>>(&mut self, iter: I) {
        for secret in iter {
            self.insert(secret.as_ref());
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("len", &self.values.len())
            .finish()
    }
}

/// Makes upstream-provided text safe for a client (see the [module
/// docs](self)): the gateway's [`Secrets`], the credential the request
/// presented, and anything shaped like a credential become `[redacted]`.
///
/// Cheap to clone. A gateway puts one in each request's extensions, so that
/// a layer that writes an error into a stream (a fallback cascade's
/// `stream_interrupted` event) redacts it as the gateway's edge does. The
/// default knows no secrets and redacts by shape alone.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Secrets,
    /// The request's own credential header value (`Bearer <key>`, or the key
    /// alone): a key the gateway knows the text of only while it serves
    /// the request.
    presented: Option<HeaderValue>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets)
            .field("presented", &self.presented.is_some())
            .finish()
    }
}

impl Redactor {
    /// A redactor for `secrets`.
    pub fn new(secrets: Secrets) -> Self {
        Redactor {
            secrets,
            presented: None,
        }
    }

    /// Also redacts the credential a request presented: the value of its
    /// `Authorization` (the token after the scheme too), `x-api-key` or
    /// `api-key` header. The header value is shared, not copied.
    pub fn with_presented(mut self, credential: HeaderValue) -> Self {
        self.presented = Some(credential);
        self
    }

    /// The request's credential: its header value whole and, for
    /// `<scheme> <token>`, the token.
    fn presented(&self) -> [Option<&[u8]>; 2] {
        let Some(value) = self.presented.as_ref().map(HeaderValue::as_bytes) else {
            return [None, None];
        };
        let token = value
            .iter()
            .position(|&b| b == b' ')
            .map(|space| value[space + 1..].trim_ascii());
        let long = |secret: &&[u8]| secret.len() >= MIN_SECRET_LEN;
        [Some(value.trim_ascii()).filter(long), token.filter(long)]
    }

    /// Every range of `text` to redact: the configured secrets and the
    /// request's credential, in every form, and credential shapes.
    fn find(&self, text: &[u8]) -> Vec<std::ops::Range<usize>> {
        let presented = self.presented();
        let escaped = memchr::memchr2(b'%', b'\\', text).is_some();
        let encoded: Vec<Vec<u8>> = if escaped {
            presented
                .iter()
                .flatten()
                .flat_map(|p| encode::forms(p))
                .collect()
        } else {
            Vec::new()
        };
        let ad_hoc = (presented.into_iter().flatten()).chain(encoded.iter().map(Vec::as_slice));
        scan::find(text, self.secrets.finders(escaped), ad_hoc)
    }

    /// `text`, safe for a client: secrets and credential-shaped tokens
    /// redacted, control and invisible characters dropped, cut at
    /// [`MAX_MESSAGE_LEN`] bytes.
    pub fn redact(&self, text: &str) -> String {
        let mut window = text.len().min(MAX_SCAN_LEN);
        while !text.is_char_boundary(window) {
            window -= 1;
        }
        let clean: String = text[..window].chars().filter(|&c| !is_hidden(c)).collect();
        let mut spans = self.find(clean.as_bytes());
        if window < text.len() {
            // A secret may straddle the cut: its start is in the window,
            // too short to be recognised. The window's tail goes.
            let longest = (self.secrets.finders(false).map(Finder::needle))
                .chain(self.presented().into_iter().flatten())
                .map(<[u8]>::len)
                .max()
                .unwrap_or(0);
            // Encoded forms are at most six bytes a byte (`\\u0041`).
            let guard = 8 * longest + 64;
            spans.push(clean.len().saturating_sub(guard)..clean.len());
            spans.sort_unstable_by_key(|span| span.start);
        }
        render(&clean, &spans)
    }

    /// `failure` with its client-facing texts (`message`, `param`, `code`)
    /// redacted.
    pub fn redact_failure(&self, failure: &Failure) -> Failure {
        failure.map_texts(|text| self.redact(text))
    }

    /// A header value safe to forward to a client: the value itself when
    /// nothing in it needs redacting (no copy), else the value with the
    /// secrets replaced, or `None` when that is not a valid header value.
    pub fn header(&self, value: HeaderValue) -> Option<HeaderValue> {
        let bytes = value.as_bytes();
        if bytes.len() > MAX_SCAN_LEN {
            return None;
        }
        let spans = self.find(bytes);
        if spans.is_empty() {
            return Some(value);
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        for span in &spans {
            out.extend_from_slice(&bytes[at..span.start]);
            out.extend_from_slice(MARKER.as_bytes());
            at = span.end;
        }
        out.extend_from_slice(&bytes[at..]);
        let mut redacted = HeaderValue::from_bytes(&out).ok()?;
        redacted.set_sensitive(value.is_sensitive());
        Some(redacted)
    }
}

/// `text` with each span replaced by the marker, cut at
/// [`MAX_MESSAGE_LEN`] bytes.
fn render(text: &str, spans: &[std::ops::Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_LEN + MARKER.len()));
    let mut at = 0;
    for span in spans {
        // Spans found in a decoded reading may end inside a character of
        // the text: widen them to whole characters.
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = span.end.min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        if start >= at {
            out.push_str(&text[at..start]);
            out.push_str(MARKER);
        }
        at = at.max(end);
        if out.len() >= MAX_MESSAGE_LEN {
            break;
        }
    }
    if out.len() < MAX_MESSAGE_LEN {
        out.push_str(&text[at..]);
    }
    if out.len() > MAX_MESSAGE_LEN {
        let mut cut = MAX_MESSAGE_LEN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Characters that are dropped from a client's text: control characters,
/// and the invisible ones (zero-width spaces, joiners, direction marks, the
/// byte-order mark) that could hide a key from a search or spoof text.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Makes upstream error text safe to pass to a client when no secrets are
/// known: [`Redactor::redact`] with the shape rules alone. Classifiers use it
/// on the text they keep; the gateway's edge redacts again with its
/// secrets.
pub fn sanitize_message(text: &str) -> String {
    Redactor::default().redact(text)
}

#[cfg(test)]
mod tests;
