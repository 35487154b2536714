//! Request ids: the client's `x-request-id` when it is sane, else a new one.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;

/// The request id header, accepted and echoed.
pub(crate) const X_REQUEST_ID: &str = "x-request-id";

/// Makes unique, unguessable-enough request ids: a per-process random seed
/// mixed with a counter (ids are for correlation, not for security).
#[derive(Debug)]
pub(crate) struct RequestIds {
    seed: u64,
    counter: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            seed: RandomState::new().hash_one(0x7011_6a7e_u64),
            counter: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// The client's id if it is a short printable token, else a fresh one.
    pub(crate) fn for_request(&self, headers: &HeaderMap) -> Arc<str> {
        if let Some(id) = headers.get(X_REQUEST_ID).and_then(|v| v.to_str().ok())
            && !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Arc::from(id);
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // `tg-` and 16 hex digits, placed by hand (`format!` is most of the
        // cost of an id otherwise).
        let mut id = *b"tg-0000000000000000";
        let mut bits = splitmix64(self.seed ^ n);
        for digit in id[3..].iter_mut().rev() {
            *digit = b"0123456789abcdef"[(bits & 0xf) as usize];
            bits >>= 4;
        }
        Arc::from(std::str::from_utf8(&id).unwrap_or("tg-"))
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn keeps_a_sane_client_id_and_replaces_a_bad_one() {
        let ids = RequestIds::default();
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(&*ids.for_request(&headers), "abc-123");
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert!(ids.for_request(&headers).starts_with("tg-"));
        let a = ids.for_request(&HeaderMap::new());
        let b = ids.for_request(&HeaderMap::new());
        assert_ne!(a, b);
        assert_eq!(a.len(), "tg-".len() + 16);
        assert!(
            a[3..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let n = ids.counter.load(Ordering::Relaxed);
        assert_eq!(
            &*ids.for_request(&HeaderMap::new()),
            format!("tg-{:016x}", splitmix64(ids.seed ^ n))
        );
    }
}
