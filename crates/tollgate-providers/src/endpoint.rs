//! Where a provider is, and the headers it gets: validated and encoded once.

use http::header::HeaderName;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri, request};

use crate::config::{ProviderConfig, Secret};
use crate::error::InvalidConfig;

/// A provider's base URL, split once.
#[derive(Debug, Clone)]
pub(crate) struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    path: String,
}

impl BaseUrl {
    /// `api_base`, or `default` when it is unset.
    pub(crate) fn new(api_base: Option<&str>, default: &str) -> Result<Self, InvalidConfig> {
        let uri: Uri = api_base
            .unwrap_or(default)
            .parse()
            .map_err(|_| InvalidConfig::ApiBase)?;
        let scheme = uri.scheme().cloned().ok_or(InvalidConfig::ApiBase)?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS || uri.query().is_some() {
            return Err(InvalidConfig::ApiBase);
        }
        Ok(BaseUrl {
            authority: uri.authority().cloned().ok_or(InvalidConfig::ApiBase)?,
            scheme,
            path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The base path, without a trailing slash.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The URL of `tail` (a path, with a query if any) under the base.
    pub(crate) fn join(&self, tail: &str) -> Option<Uri> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query =
            Some(PathAndQuery::from_maybe_shared(format!("{}{tail}", self.path)).ok()?);
        Uri::from_parts(parts).ok()
    }
}

/// The headers a provider adds to every request, encoded once; secret ones
/// are marked sensitive (kept out of debug output and HPACK tables).
#[derive(Clone, Default)]
pub(crate) struct Headers(Vec<(HeaderName, HeaderValue)>);

impl Headers {
    /// A header holding a credential.
    pub(crate) fn secret(
        &mut self,
        name: &'static str,
        value: &str,
        setting: &'static str,
    ) -> Result<(), InvalidConfig> {
        let mut value =
            HeaderValue::from_str(value).map_err(|_| InvalidConfig::Invalid(setting.to_owned()))?;
        value.set_sensitive(true);
        self.0.push((HeaderName::from_static(name), value));
        Ok(())
    }

    /// `config`'s `api_key` in `key_header` and its `bearer_token` as
    /// `authorization: Bearer …`, each when set.
    pub(crate) fn credentials(
        &mut self,
        config: &ProviderConfig,
        key_header: &'static str,
    ) -> Result<(), InvalidConfig> {
        if let Some(key) = &config.api_key {
            self.secret(key_header, &key.0, "api_key")?;
        }
        if let Some(token) = &config.bearer_token {
            self.secret(
                "authorization",
                &format!("Bearer {}", token.0),
                "bearer_token",
            )?;
        }
        Ok(())
    }

    /// A plain header.
    pub(crate) fn plain(
        &mut self,
        name: &'static str,
        value: &str,
        setting: &'static str,
    ) -> Result<(), InvalidConfig> {
        let value =
            HeaderValue::from_str(value).map_err(|_| InvalidConfig::Invalid(setting.to_owned()))?;
        self.0.push((HeaderName::from_static(name), value));
        Ok(())
    }

    /// The configuration's own headers (`extra_headers`), after the
    /// provider's: they win.
    pub(crate) fn extra(&mut self, config: &ProviderConfig) -> Result<(), InvalidConfig> {
        for (name, Secret(value)) in &config.headers {
            let invalid = || InvalidConfig::Invalid(format!("header {name}"));
            let name = HeaderName::try_from(name.as_str()).map_err(|_| invalid())?;
            let mut value = HeaderValue::from_str(value).map_err(|_| invalid())?;
            value.set_sensitive(true);
            self.0.push((name, value));
        }
        Ok(())
    }

    /// Points `head` at `uri` and sets the headers, replacing any of the
    /// same name: a caller's `Authorization` is never forwarded to a
    /// provider that authenticates otherwise.
    pub(crate) fn apply(&self, head: &mut request::Parts, uri: Uri) {
        head.uri = uri;
        head.headers.remove(http::header::AUTHORIZATION);
        head.headers.remove(http::header::CONTENT_LENGTH);
        for (name, value) in &self.0 {
            head.headers.insert(name.clone(), value.clone());
        }
        head.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }

    #[cfg(test)]
    pub(crate) fn map(&self) -> http::HeaderMap {
        self.0.iter().cloned().collect()
    }
}

impl std::fmt::Debug for Headers {
    // Names only: values hold keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

/// The URL of `model`'s `method` under `models`: `{models}/{model}{method}`
/// (Vertex AI's `…/models/claude-sonnet-4@20250514:rawPredict`). The model
/// comes from the request, so one that is not a plain path segment
/// (letters, digits, `-._@`) is a bad request, never a path of its own.
pub(crate) fn model_uri(
    models: &BaseUrl,
    model: &str,
    method: &str,
) -> Result<Uri, tollgate_core::Failure> {
    let plain = !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'@'));
    let invalid = || {
        tollgate_core::Failure::new(
            tollgate_core::ErrorClass::BadRequest,
            "the model name cannot be sent to the provider",
        )
        .with_param("model")
    };
    if !plain {
        return Err(invalid());
    }
    models
        .join(&format!("/{model}{method}"))
        .ok_or_else(invalid)
}
