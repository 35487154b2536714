//! Where and how to reach one deployment.

use http::header::{AUTHORIZATION, HeaderName};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Uri};
use tollgate_core::Operation;

/// The operations whose URIs an endpoint joins once, when it is built.
const OPERATIONS: [Operation; 3] = [
    Operation::ChatCompletions,
    Operation::Completions,
    Operation::Embeddings,
];

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
        Ok(Endpoint {
            scheme,
            authority,
            base_path,
            headers: HeaderMap::new(),
            operations,
        })
    }

    /// Sends `Authorization: Bearer <key>`. The header is marked sensitive so
    /// that no debug output or HPACK table keeps it.
    pub fn with_bearer(mut self, key: &str) -> Result<Self, http::header::InvalidHeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}"))?;
        value.set_sensitive(true);
        self.headers.insert(AUTHORIZATION, value);
        Ok(self)
    }

    /// Sends an extra header with every request.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
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

    /// The headers sent with every request (credentials included).
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Sets [`headers`](Self::headers) on a request's, over any of the same
    /// name.
    pub(crate) fn set_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
    }
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
    fn rejects_relative_and_odd_schemes_and_hides_the_key() {
        assert!(Endpoint::new("/v1").is_err());
        assert!(Endpoint::new("ftp://x/v1").is_err());
        let ep = Endpoint::new("http://x")
            .unwrap()
            .with_bearer("sk-secret")
            .unwrap();
        assert!(!format!("{ep:?}").contains("sk-secret"));
        assert!(ep.headers()[AUTHORIZATION].is_sensitive());
    }
}
