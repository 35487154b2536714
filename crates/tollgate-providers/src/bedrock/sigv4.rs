//! AWS Signature Version 4 for request headers, on `ring`.
//!
//! From AWS's "Create a signed AWS API request"
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>):
//! a canonical request (method, canonical URI, canonical query, the signed
//! headers lowercased and sorted, their names, the payload's SHA-256), a
//! string to sign (`AWS4-HMAC-SHA256`, the time, the credential scope, the
//! canonical request's SHA-256), a signing key derived from the secret by
//! HMAC-SHA256 over the date, region, service and `aws4_request`, and the
//! `Authorization` header naming the key id, the scope, the signed headers
//! and the signature. Every service but S3 encodes the path a second time
//! (Bedrock's model ids hold `:`, already `%3A` in the URL).

use std::fmt::{self, Write as _};

use http::{HeaderValue, request};
use ring::{digest, hmac};
use tollgate_core::time::civil_from_days;

/// The credentials a request is signed with (LiteLLM's
/// `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`).
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    // The key id is an identifier, not a secret, but it ties logs to an
    // account: kept out too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("session_token", &self.session_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Signs requests for one service in one region.
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    pub(crate) credentials: Credentials,
    pub(crate) region: String,
    pub(crate) service: &'static str,
}

impl Signer {
    /// Adds `x-amz-date` (from `unix_seconds`), `x-amz-security-token`
    /// when there is a session token, and `authorization` to `head`, whose
    /// URI must be absolute. Signed: `host` (the URI's authority, which the
    /// client sends as `Host`), `content-type` when set, and the two
    /// `x-amz-` headers.
    pub(crate) fn sign(&self, head: &mut request::Parts, body: &[u8], unix_seconds: u64) {
        let (date, time) = amz_date(unix_seconds);
        let host = head.uri.authority().map_or("", |a| a.as_str()).to_owned();
        head.headers.insert(
            "x-amz-date",
            HeaderValue::from_str(&time).unwrap_or(HeaderValue::from_static("")),
        );
        if let Some(token) = &self.credentials.session_token
            && let Ok(mut value) = HeaderValue::from_str(token)
        {
            value.set_sensitive(true);
            head.headers.insert("x-amz-security-token", value);
        }
        let mut signed: Vec<(&str, &str)> = vec![("host", &host)];
        for name in ["content-type", "x-amz-date", "x-amz-security-token"] {
            if let Some(value) = head.headers.get(name).and_then(|v| v.to_str().ok()) {
                signed.push((name, value.trim()));
            }
        }
        let names = signed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(";");
        let mut canonical = String::with_capacity(256);
        let _ = write!(
            canonical,
            "{}\n{}\n{}\n",
            head.method,
            canonical_uri(head.uri.path()),
            canonical_query(head.uri.query().unwrap_or("")),
        );
        for (name, value) in &signed {
            let _ = writeln!(canonical, "{name}:{value}");
        }
        let _ = write!(canonical, "\n{names}\n{}", hex_sha256(body));

        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{time}\n{scope}\n{}",
            hex_sha256(canonical.as_bytes())
        );
        let key = signing_key(
            &self.credentials.secret_access_key,
            &date,
            &self.region,
            self.service,
        );
        let signature = hex(hmac::sign(&key, to_sign.as_bytes()).as_ref());
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={names}, Signature={signature}",
            self.credentials.access_key_id
        );
        if let Ok(mut value) = HeaderValue::from_str(&authorization) {
            value.set_sensitive(true);
            head.headers.insert(http::header::AUTHORIZATION, value);
        }
    }
}

/// The derived key: HMAC-SHA256 chained over the date, region, service and
/// `aws4_request`, starting from `AWS4` + the secret.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes());
    for part in [date, region, service, "aws4_request"] {
        key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&key, part.as_bytes()).as_ref(),
        );
    }
    key
}

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)` of a Unix time.
pub(crate) fn amz_date(unix_seconds: u64) -> (String, String) {
    let days = i64::try_from(unix_seconds / 86_400).unwrap_or(0);
    let of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    (date, time)
}

/// The path, each byte but the unreserved ones and `/` percent-encoded:
/// an already encoded path (`%3A`) is encoded again (`%253A`), as every
/// service but S3 expects.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    encode(path.as_bytes(), true)
}

/// The query's parameters decoded, encoded again and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(&decode(name), false), encode(&decode(value), false))
        })
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    pairs.join("&")
}

/// RFC 3986 encoding: `A-Z a-z 0-9 - _ . ~` kept (and `/` when
/// `keep_slash`), every other byte as `%XX`.
fn encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Percent-decoding; a `%` not followed by two hex digits stays as it is.
fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex_pair = bytes
            .get(at + 1..at + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[at], hex_pair) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    out
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}
