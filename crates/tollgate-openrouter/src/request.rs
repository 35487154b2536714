//! The request side: where a request goes and what it carries.

use http::header::{AUTHORIZATION, HeaderName};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Uri};

use tollgate_core::Valid;

use crate::config::OpenRouterConfig;
use crate::error::InvalidConfig;

const HTTP_REFERER: HeaderName = HeaderName::from_static("http-referer");
const X_TITLE: HeaderName = HeaderName::from_static("x-title");

/// The OpenRouter model slug of a LiteLLM-style model name:
/// `openrouter/deepseek/deepseek-chat:free` → `deepseek/deepseek-chat:free`;
/// a name without the prefix is returned as it is.
///
/// The layer does not rewrite request bodies — parsing every request to
/// change one field would cost more than the rest of the layer — so whoever
/// builds the body sends the slug: the gateway does, with this function, when
/// it loads its configuration.
///
/// ```
/// use tollgate_openrouter::strip_prefix;
///
/// assert_eq!(strip_prefix("openrouter/z-ai/glm-4.5-air:free"), "z-ai/glm-4.5-air:free");
/// assert_eq!(strip_prefix("z-ai/glm-4.5-air:free"), "z-ai/glm-4.5-air:free");
/// ```
pub fn strip_prefix(model: &str) -> &str {
    model.strip_prefix("openrouter/").unwrap_or(model)
}

/// The base URL and headers, validated and encoded once.
#[derive(Clone)]
pub(crate) struct Prepare {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    authorization: Option<HeaderValue>,
    http_referer: Option<HeaderValue>,
    x_title: Option<HeaderValue>,
}

impl Prepare {
    /// The encoding of a configuration that passed its check.
    pub(crate) fn encode(config: &Valid<OpenRouterConfig>) -> Self {
        // `Validate` ran `Prepare::new` on this very configuration.
        Prepare::new(config).unwrap_or_else(|_| unreachable!("a valid configuration encodes"))
    }

    /// OpenRouter's public API ([`DEFAULT_API_BASE`]), with no headers.
    ///
    /// [`DEFAULT_API_BASE`]: crate::DEFAULT_API_BASE
    pub(crate) fn public_api() -> Self {
        Prepare {
            scheme: Scheme::HTTPS,
            authority: Authority::from_static("openrouter.ai"),
            base_path: "/api/v1".to_owned(),
            authorization: None,
            http_referer: None,
            x_title: None,
        }
    }

    /// Checks and encodes `config`.
    pub(crate) fn new(config: &OpenRouterConfig) -> Result<Self, InvalidConfig> {
        let uri: Uri = config
            .api_base
            .parse()
            .map_err(|_| InvalidConfig::ApiBase)?;
        let scheme = uri.scheme().cloned().ok_or(InvalidConfig::ApiBase)?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS || uri.query().is_some() {
            return Err(InvalidConfig::ApiBase);
        }
        let authority = uri.authority().cloned().ok_or(InvalidConfig::ApiBase)?;
        let authorization = match &config.api_key {
            Some(key) => {
                let mut value = HeaderValue::try_from(format!("Bearer {}", key.0))
                    .map_err(|_| InvalidConfig::ApiKey)?;
                // Kept out of debug output and HPACK tables.
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let header = |value: &Option<String>, name| {
            value
                .as_deref()
                .map(|v| HeaderValue::from_str(v).map_err(|_| InvalidConfig::Header(name)))
                .transpose()
        };
        Ok(Prepare {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            authorization,
            http_referer: header(&config.http_referer, "http_referer")?,
            x_title: header(&config.x_title, "x_title")?,
        })
    }

    /// Points a relative request at the base URL and adds the headers the
    /// request does not carry yet.
    pub(crate) fn apply<B>(&self, request: &mut Request<B>) {
        let uri = request.uri();
        if uri.scheme().is_none() && uri.authority().is_none() {
            let tail = uri.path_and_query().map_or("", PathAndQuery::as_str);
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
            parts.path_and_query =
                PathAndQuery::from_maybe_shared(format!("{}{tail}", self.base_path)).ok();
            // Both halves were valid URI parts already; keep the request as
            // it was if the join somehow is not.
            if let Ok(joined) = Uri::from_parts(parts) {
                *request.uri_mut() = joined;
            }
        }
        let headers = request.headers_mut();
        for (name, value) in [
            (AUTHORIZATION, &self.authorization),
            (HTTP_REFERER, &self.http_referer),
            (X_TITLE, &self.x_title),
        ] {
            if let Some(value) = value
                && !headers.contains_key(&name)
            {
                headers.insert(name, value.clone());
            }
        }
    }
}

impl std::fmt::Debug for Prepare {
    // Never the headers: one holds the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepare")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("base_path", &self.base_path)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(config: OpenRouterConfig) -> Prepare {
        Prepare::encode(&config.build().unwrap())
    }

    #[test]
    fn the_public_api_is_the_default_configuration_encoded() {
        let default = format!("{:?}", prepare(OpenRouterConfig::new()));
        assert_eq!(format!("{:?}", Prepare::public_api()), default);
    }

    #[test]
    fn relative_requests_go_under_the_base_and_absolute_ones_stay() {
        let p = prepare(OpenRouterConfig::new());
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_static("/chat/completions?x=1");
        p.apply(&mut request);
        assert_eq!(
            request.uri(),
            "https://openrouter.ai/api/v1/chat/completions?x=1"
        );

        let p = prepare(OpenRouterConfig::new().api_base("http://127.0.0.1:9/v1/"));
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_static("/models");
        p.apply(&mut request);
        assert_eq!(request.uri(), "http://127.0.0.1:9/v1/models");

        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_static("http://elsewhere/x");
        p.apply(&mut request);
        assert_eq!(request.uri(), "http://elsewhere/x");
    }

    #[test]
    fn headers_are_added_when_configured_and_absent() {
        let p = prepare(
            OpenRouterConfig::new()
                .api_key("sk-or-key")
                .http_referer("https://site.example")
                .x_title("App"),
        );
        let mut request = Request::new(());
        p.apply(&mut request);
        let auth = &request.headers()[AUTHORIZATION];
        assert_eq!(auth, "Bearer sk-or-key");
        assert!(auth.is_sensitive());
        assert_eq!(request.headers()["http-referer"], "https://site.example");
        assert_eq!(request.headers()["x-title"], "App");
        assert!(!format!("{p:?}").contains("sk-or-key"));

        let mut request = Request::new(());
        request
            .headers_mut()
            .insert(AUTHORIZATION, HeaderValue::from_static("Bearer caller"));
        p.apply(&mut request);
        assert_eq!(request.headers()[AUTHORIZATION], "Bearer caller");

        let mut request = Request::new(());
        prepare(OpenRouterConfig::new()).apply(&mut request);
        assert!(request.headers().is_empty());
    }

    #[test]
    fn invalid_settings_are_named() {
        let invalid = |config: OpenRouterConfig| Prepare::new(&config).unwrap_err();
        assert_eq!(
            invalid(OpenRouterConfig::new().api_base("openrouter.ai")),
            InvalidConfig::ApiBase
        );
        assert_eq!(
            invalid(OpenRouterConfig::new().api_base("ftp://x/")),
            InvalidConfig::ApiBase
        );
        assert_eq!(
            invalid(OpenRouterConfig::new().api_key("a\nb")),
            InvalidConfig::ApiKey
        );
        assert_eq!(
            invalid(OpenRouterConfig::new().x_title("a\rb")),
            InvalidConfig::Header("x_title")
        );
    }
}
