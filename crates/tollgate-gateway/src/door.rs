//! What the gateway refuses before it routes a request: a URI or a header
//! block too large for it.
//!
//! hyper refuses such requests itself only far beyond these limits — a URI
//! over 64 KiB, a request head over its ~400 KiB read buffer, more than 100
//! headers — and then answers with an empty body it gives no way to
//! replace. Below those, the gateway's own, lower limits answer first, in
//! OpenAI's error shape. (The README lists what hyper still answers.)

use http::{Request, StatusCode};
use tollgate_core::{ErrorClass, Failure};

/// The longest request URI (path and query) the gateway takes, in bytes.
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;

/// The largest header block the gateway takes, in bytes: each header's
/// name and value, plus 4 for the `: ` and line end it takes on the wire.
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The request's head is within the gateway's limits, or the 414 or 431
/// saying which it is not.
pub(crate) fn check_head<B>(request: &Request<B>) -> Result<(), Failure> {
    let uri = request.uri();
    let uri_len = uri.path().len() + uri.query().map_or(0, |query| query.len() + 1);
    if uri_len > MAX_URI_BYTES {
        return Err(Failure::new(
            ErrorClass::BadRequest,
            format!("the request URI is longer than the limit of {MAX_URI_BYTES} bytes"),
        )
        .with_status(StatusCode::URI_TOO_LONG)
        .with_code("uri_too_long"));
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(Failure::new(
            ErrorClass::BadRequest,
            format!("the request headers are larger than the limit of {MAX_HEADER_BYTES} bytes"),
        )
        .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        .with_code("request_header_fields_too_large"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, header: usize) -> Request<()> {
        let mut builder = Request::get(uri);
        if header > 0 {
            builder = builder.header("x-big", "v".repeat(header));
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn a_head_at_the_limits_passes_and_one_byte_more_does_not() {
        // "/" and "?" count: the path and the query as the client sent them.
        let at_limit = format!("/?{}", "q".repeat(MAX_URI_BYTES - 2));
        assert!(check_head(&request(&at_limit, 0)).is_ok());
        let over = format!("{at_limit}q");
        let failure = check_head(&request(&over, 0)).unwrap_err();
        assert_eq!(failure.status(), StatusCode::URI_TOO_LONG);
        assert_eq!(failure.class(), ErrorClass::BadRequest);

        let value_at_limit = MAX_HEADER_BYTES - "x-big".len() - 4;
        assert!(check_head(&request("/", value_at_limit)).is_ok());
        let failure = check_head(&request("/", value_at_limit + 1)).unwrap_err();
        assert_eq!(
            failure.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let body: serde_json::Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
        assert_eq!(body["error"]["code"], "request_header_fields_too_large");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}
