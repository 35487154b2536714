//! SigV4 as AWS checks it: the signature recomputed from the request as
//! received ("Create a signed AWS API request",
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>),
//! written apart from the signer under test.

use std::fmt::Write as _;

use http::{HeaderMap, Method, Uri};
use ring::{digest, hmac};

use super::error;
use crate::Reply;

/// What a signature is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The access key id the `Credential` must name.
    pub access_key_id: &'a str,
    /// The secret the signature must be made with.
    pub secret_access_key: &'a str,
    /// The region the scope must name.
    pub region: &'a str,
    /// The service the scope must name (`bedrock`).
    pub service: &'a str,
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// AWS's error type (`InvalidSignatureException`...).
    pub kind: &'static str,
    /// What was wrong.
    pub reason: String,
}

impl Refusal {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }

    /// AWS's answer: a 403 with the type in `x-amzn-errortype`.
    pub fn reply(&self) -> Reply {
        error(403, self.kind, &self.reason)
    }
}

/// Recomputes the SigV4 signature of a request from what it carries and
/// the expected credentials, as AWS does: `Ok` when it matches.
///
/// # Errors
///
/// The refusal AWS would answer: no or a malformed `Authorization`, an
/// unknown key id, a scope for another region or service, an `x-amz-date`
/// that is missing or not the scope's day, a signed header missing, or a
/// signature that does not match.
pub fn verify_sigv4(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    expected: &Expected<'_>,
) -> Result<(), Refusal> {
    let missing = || {
        Refusal::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    };
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| {
            Refusal::new(
                "IncompleteSignatureException",
                "not an AWS4-HMAC-SHA256 authorization",
            )
        })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", value)) => credential = Some(value),
            Some(("SignedHeaders", value)) => signed_headers = Some(value),
            Some(("Signature", value)) => signature = Some(value),
            _ => {}
        }
    }
    let incomplete =
        |what: &str| Refusal::new("IncompleteSignatureException", format!("{what} is missing"));
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;

    let parts: Vec<&str> = credential.split('/').collect();
    let [key_id, day, region, service, terminator] = parts[..] else {
        return Err(incomplete("a well-formed Credential"));
    };
    if key_id != expected.access_key_id {
        return Err(Refusal::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if region != expected.region || service != expected.service || terminator != "aws4_request" {
        return Err(Refusal::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region and service, not '{region}/{service}'"
            ),
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("x-amz-date"))?;
    if !amz_date.starts_with(day) || amz_date.len() != 16 {
        return Err(Refusal::new(
            "InvalidSignatureException",
            "Date in Credential scope does not match x-amz-date",
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err(Refusal::new(
            "InvalidSignatureException",
            "host and x-amz-date must be signed",
        ));
    }
    if headers.contains_key("x-amz-security-token") && !names.contains(&"x-amz-security-token") {
        return Err(Refusal::new(
            "InvalidSignatureException",
            "x-amz-security-token must be signed",
        ));
    }

    // The canonical request, as received.
    let mut canonical = format!("{method}\n");
    for byte in uri.path().bytes() {
        push_encoded(&mut canonical, byte, true);
    }
    canonical.push('\n');
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encoded(k), encoded(v))
        })
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    canonical.push_str(&query.join("&"));
    canonical.push('\n');
    for name in &names {
        let values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .collect();
        if values.is_empty() {
            return Err(Refusal::new(
                "InvalidSignatureException",
                format!("signed header {name} is missing"),
            ));
        }
        let _ = writeln!(canonical, "{name}:{}", values.join(","));
    }
    let _ = write!(
        canonical,
        "\n{signed_headers}\n{}",
        hex(digest::digest(&digest::SHA256, body).as_ref())
    );

    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{day}/{region}/{service}/aws4_request\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{}", expected.secret_access_key).into_bytes();
    for part in [day, region, service, "aws4_request"] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
            .as_ref()
            .to_vec();
    }
    let computed = hex(hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &key),
        string_to_sign.as_bytes(),
    )
    .as_ref());
    if computed == signature {
        Ok(())
    } else {
        Err(Refusal::new(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ))
    }
}

/// Percent-decodes then encodes a query part.
fn encoded(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let pair = bytes
            .get(at + 1..at + 3)
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| u8::from_str_radix(p, 16).ok());
        if let (b'%', Some(byte)) = (bytes[at], pair) {
            decoded.push(byte);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    let mut out = String::new();
    for byte in decoded {
        push_encoded(&mut out, byte, false);
    }
    out
}

fn push_encoded(out: &mut String, byte: u8, slash: bool) {
    match byte {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
            out.push(char::from(byte));
        }
        b'/' if slash => out.push('/'),
        _ => {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}
