//! The master key check.

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Whether the request carries `Authorization: Bearer <key>` with the right
/// key. The comparison takes the same time wherever the first difference is,
/// so response timing does not reveal a prefix of the key.
pub(crate) fn is_authorized(headers: &HeaderMap, key: &str) -> bool {
    let Some(presented) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    constant_time_eq(presented.trim().as_bytes(), key.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // The length is not secret enough to hide: keys have a fixed format.
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_auth(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn accepts_only_the_exact_bearer_key() {
        assert!(is_authorized(&with_auth("Bearer sk-master"), "sk-master"));
        assert!(!is_authorized(&with_auth("Bearer sk-mastex"), "sk-master"));
        assert!(!is_authorized(&with_auth("Bearer sk-maste"), "sk-master"));
        assert!(!is_authorized(&with_auth("sk-master"), "sk-master"));
        assert!(!is_authorized(&HeaderMap::new(), "sk-master"));
    }
}
