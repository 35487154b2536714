//! Where and how to reach one deployment.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Uri};
use tollgate_core::Operation;

/// The operations whose URIs an endpoint joins once, when it is built.
const OPERATIONS: [Operation; 3] = [
    Operation::ChatCompletions,
    Operation::Completions,
    Operation::Embeddings,
];

/// The gateway's own headers on every upstream request: a JSON body,
/// asking for an event stream (`stream`) or JSON, and who asks — none of
/// the client's (its key, cookies, hop-by-hop headers) go upstream. With
/// room for the `host` hyper adds.
pub(crate) fn gateway_headers(stream: bool) -> HeaderMap {
    let accept = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut headers = HeaderMap::with_capacity(4);
    // Static values: a `&str` would be copied into each request.
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static(accept));
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
    );
    headers
}

/// One deployment's base URL, credentials and extra headers.
///
/// The client joins the base URL's path with the request's path, so a base of
/// `https://openrouter.ai/api/v1` and a request for `/chat/completions` go to
/// `https://openrouter.ai/api/v1/chat/completions`.
#[derive(Clone)]
pub struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    headers: HeaderMap,
    /// The `host` of a request to a plain `http` endpoint (see
    /// [`host_header`]).
    host: Option<HeaderValue>,
    /// The headers of a request to this endpoint, for a JSON answer and for
    /// a stream: the [gateway's](gateway_headers) and the `host`, with the
    /// endpoint's set over them. A request's are a clone, two allocations,
    /// where building them is a hashed insert a header.
    request_headers: [HeaderMap; 2],
    /// The URI of each of [`OPERATIONS`] under the base, in that order:
    /// every request goes to one of them, and a clone of a joined URI is a
    /// few reference counts where joining it again is a `format!` and a
    /// parse.
    operations: [Uri; 3],
}

/// The error for a base URL that is not an absolute `http` or `https` URL.
#[derive(Debug, thiserror::Error)]
#[error("api_base must be an absolute http:// or https:// URL")]
pub struct InvalidBaseUrl;

impl Endpoint {
    /// An endpoint at `base_url`.
    pub fn new(base_url: &str) -> Result<Self, InvalidBaseUrl> {
        let uri: Uri = base_url.parse().map_err(|_| InvalidBaseUrl)?;
        let scheme = uri.scheme().cloned().ok_or(InvalidBaseUrl)?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(InvalidBaseUrl);
        }
        let authority = uri.authority().cloned().ok_or(InvalidBaseUrl)?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let operations =
            OPERATIONS.map(|operation| join(&scheme, &authority, &base_path, operation.path()));
        let host = host_header(&scheme, &authority);
        let endpoint = Endpoint {
            scheme,
            authority,
            base_path,
            headers: HeaderMap::new(),
            host,
            request_headers: Default::default(),
            operations,
        };
        Ok(endpoint.with_request_headers())
    }

    /// Sends `Authorization: Bearer <key>`. The header is marked sensitive so
    /// that no debug output or HPACK table keeps it.
    pub fn with_bearer(mut self, key: &str) -> Result<Self, http::header::InvalidHeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}"))?;
        value.set_sensitive(true);
        self.headers.insert(AUTHORIZATION, value);
        Ok(self.with_request_headers())
    }

    /// Sends an extra header with every request.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self.with_request_headers()
    }

    /// `self` with its [`request_headers`](Self::request_headers) built
    /// again, after its own changed.
    fn with_request_headers(mut self) -> Self {
        self.request_headers = [false, true].map(|stream| {
            let mut headers = gateway_headers(stream);
            if let Some(host) = &self.host {
                headers.insert(HOST, host.clone());
            }
            self.set_headers(&mut headers);
            headers
        });
        self
    }

    /// The headers of a request to this endpoint asking for a stream
    /// (`stream`) or JSON: the [gateway's](gateway_headers) with the
    /// endpoint's set over them.
    pub(crate) fn request_headers(&self, stream: bool) -> HeaderMap {
        self.request_headers[usize::from(stream)].clone()
    }

    /// The URI of `path_and_query` under this endpoint's base.
    pub(crate) fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
        self.joined(path_and_query.map_or("", PathAndQuery::as_str))
    }

    /// The URI of `operation` under this endpoint's base.
    pub(crate) fn operation_uri(&self, operation: Operation) -> Uri {
        self.joined(operation.path())
    }

    /// `tail` under the base: joined when the endpoint was built if it is
    /// an operation's path, else now.
    fn joined(&self, tail: &str) -> Uri {
        match OPERATIONS.iter().position(|op| op.path() == tail) {
            Some(at) => self.operations[at].clone(),
            None => join(&self.scheme, &self.authority, &self.base_path, tail),
        }
    }

    /// Sets the headers the endpoint sends with every request (credentials
    /// included) on a request's, over any of the same name.
    pub(crate) fn set_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
    }
}

/// The `host` header hyper's client would write on each HTTP/1 request to
/// `authority` (the host, and the port unless it is the scheme's default),
/// written once here instead: hyper's formats it for every request. Only
/// for plain `http`, always HTTP/1 here; an `https` endpoint may speak
/// HTTP/2, whose requests name their host in `:authority`, so hyper is left
/// to write theirs.
fn host_header(scheme: &Scheme, authority: &Authority) -> Option<HeaderValue> {
    if *scheme != Scheme::HTTP {
        return None;
    }
    let host = match authority.port_u16() {
        None | Some(80) => authority.host().to_owned(),
        Some(port) => format!("{}:{port}", authority.host()),
    };
    HeaderValue::from_str(&host).ok()
}

/// `base_path` and `tail` joined under `scheme://authority`.
fn join(scheme: &Scheme, authority: &Authority, base_path: &str, tail: &str) -> Uri {
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query(format!("{base_path}{tail}"))
        .build()
        // Both halves were valid URI parts already.
        .unwrap_or_default()
}

impl std::fmt::Debug for Endpoint {
    // Never prints the headers: they hold the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("base_path", &self.base_path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_base_path_and_request_path() {
        let ep = Endpoint::new("https://openrouter.ai/api/v1/").unwrap();
        let pq = PathAndQuery::from_static("/chat/completions");
        assert_eq!(
            ep.uri_for(Some(&pq)).to_string(),
            "https://openrouter.ai/api/v1/chat/completions"
        );
        let ep = Endpoint::new("http://127.0.0.1:9").unwrap();
        assert_eq!(
            ep.uri_for(Some(&pq)).to_string(),
            "http://127.0.0.1:9/chat/completions"
        );
        // A path no operation has is joined all the same.
        let other = PathAndQuery::from_static("/responses?x=1");
        assert_eq!(
            ep.uri_for(Some(&other)).to_string(),
            "http://127.0.0.1:9/responses?x=1"
        );
        let ep = Endpoint::new("https://example.com/openai/v1").unwrap();
        for operation in OPERATIONS {
            let joined = format!("https://example.com/openai/v1{}", operation.path());
            assert_eq!(ep.operation_uri(operation).to_string(), joined);
            let path = PathAndQuery::from_static(operation.path());
            assert_eq!(ep.uri_for(Some(&path)).to_string(), joined);
        }
    }

    #[test]
    fn a_request_has_the_gateways_headers_and_the_endpoints_over_them() {
        let ep = Endpoint::new("https://x")
            .unwrap()
            .with_bearer("sk-secret")
            .unwrap()
            .with_header(USER_AGENT, HeaderValue::from_static("theirs/1"))
            .with_header(
                HeaderName::from_static("x-extra"),
                HeaderValue::from_static("1"),
            );
        for stream in [false, true] {
            let headers = ep.request_headers(stream);
            let mut expected = gateway_headers(stream);
            ep.set_headers(&mut expected);
            assert_eq!(headers, expected);
            assert_eq!(headers[USER_AGENT], "theirs/1");
            assert_eq!(headers[AUTHORIZATION], "Bearer sk-secret");
            assert!(headers[AUTHORIZATION].is_sensitive());
        }
        assert_eq!(ep.request_headers(true)[ACCEPT], "text/event-stream");
        assert_eq!(ep.request_headers(false)[ACCEPT], "application/json");
        assert_eq!(ep.request_headers(false)[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn a_plain_http_request_names_its_host_as_hyper_would() {
        let host = |base: &str| {
            let headers = Endpoint::new(base).unwrap().request_headers(false);
            headers.get(HOST).map(|h| h.to_str().unwrap().to_owned())
        };
        assert_eq!(
            host("http://127.0.0.1:9/v1").as_deref(),
            Some("127.0.0.1:9")
        );
        assert_eq!(host("http://x").as_deref(), Some("x"));
        assert_eq!(host("http://x:80/v1").as_deref(), Some("x"));
        assert_eq!(host("http://[::1]:8080").as_deref(), Some("[::1]:8080"));
        // HTTPS may be HTTP/2: hyper writes its host, if any.
        assert_eq!(host("https://api.example.com/v1"), None);
        // A host the configuration sets wins.
        let ep = Endpoint::new("http://x:9")
            .unwrap()
            .with_header(HOST, HeaderValue::from_static("y"));
        assert_eq!(ep.request_headers(true)[HOST], "y");
    }

    #[test]
    fn rejects_relative_and_odd_schemes_and_hides_the_key() {
        assert!(Endpoint::new("/v1").is_err());
        assert!(Endpoint::new("ftp://x/v1").is_err());
        let ep = Endpoint::new("http://x")
            .unwrap()
            .with_bearer("sk-secret")
            .unwrap();
        assert!(!format!("{ep:?}").contains("sk-secret"));
        assert!(ep.request_headers(false)[AUTHORIZATION].is_sensitive());
    }
}
