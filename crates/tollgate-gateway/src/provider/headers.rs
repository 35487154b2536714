//! The upstream response headers that go on up the stack: an allow-list,
//! applied once, where the answer comes in.
//!
//! Everything else an upstream sends stays here: its cookies, its auth
//! challenges, the hosts and ids it names, hop-by-hop headers and a
//! `content-length` the layers above may make wrong (the cost layer removes
//! a usage chunk it asked for). The layers add their own headers (the
//! cost, the attempts, the key's rate limits) to what is left, and the
//! handler sends the lot, redacted where the upstream wrote it.

use http::header::{CONTENT_TYPE, Entry};
use http::{HeaderMap, HeaderName, Response};

/// The prefix of the rate-limit headers an upstream may pass on to the
/// client (OpenAI's `x-ratelimit-limit-requests` and the like).
pub(crate) const RATE_LIMIT_PREFIX: &str = "x-ratelimit-";

/// Whether an upstream's header `name` may reach the client: its
/// `content-type`, and its `x-ratelimit-*` headers.
pub(crate) fn allowed(name: &HeaderName) -> bool {
    *name == CONTENT_TYPE || name.as_str().starts_with(RATE_LIMIT_PREFIX)
}

/// `response` with only the headers the allow-list keeps, in a map with
/// room for those the layers and the handler add (growing it on the way
/// costs more than the inserts).
pub(crate) fn allow_listed<B>(mut response: Response<B>) -> Response<B> {
    let upstream = std::mem::replace(response.headers_mut(), HeaderMap::with_capacity(16));
    let headers = response.headers_mut();
    // `into_iter` gives a name once, before the first of its values: it is
    // moved into the new map (a copy of a custom name would allocate), and
    // its further values go to the same entry.
    let mut kept = None;
    for (name, value) in upstream {
        match name {
            Some(name) => {
                kept = None;
                if allowed(&name) {
                    kept = Some(match headers.entry(name) {
                        Entry::Vacant(entry) => entry.insert_entry(value),
                        // Not in a fresh map; appended all the same.
                        Entry::Occupied(mut entry) => {
                            entry.append(value);
                            entry
                        }
                    });
                }
            }
            None => {
                if let Some(entry) = kept.as_mut() {
                    entry.append(value);
                }
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_content_type_and_rate_limits_pass() {
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .header("set-cookie", "session=1")
            .header("www-authenticate", "Bearer")
            .header("content-length", "12")
            .header("x-ratelimit-remaining-requests", "9")
            .header("x-ratelimit-remaining-tokens", "90")
            .header("x-ratelimit-remaining-tokens", "91")
            .header("openai-organization", "org-1")
            .header("server", "upstream.internal")
            .body(())
            .unwrap();
        let response = allow_listed(response);
        let mut names: Vec<&str> = response.headers().keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-type",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-remaining-tokens"
            ]
        );
        let tokens: Vec<_> = response
            .headers()
            .get_all("x-ratelimit-remaining-tokens")
            .iter()
            .collect();
        assert_eq!(tokens, ["90", "91"]);
    }
}
