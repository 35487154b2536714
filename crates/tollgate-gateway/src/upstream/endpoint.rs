//! Where and how to reach one deployment.

use http::header::{AUTHORIZATION, HeaderName};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Uri};

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
        Ok(Endpoint {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            headers: HeaderMap::new(),
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
        let tail = path_and_query.map_or("", PathAndQuery::as_str);
        let joined = format!("{}{}", self.base_path, tail);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(joined)
            .build()
            // Both halves were valid URI parts already.
            .unwrap_or_default()
    }

    /// The headers sent with every request (credentials included).
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }
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
