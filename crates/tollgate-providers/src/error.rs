//! The errors the crate adds.

/// A [`ProviderConfig`](crate::ProviderConfig) a provider cannot use.
/// Messages name the setting, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidConfig {
    /// `api_base` is not an absolute `http://` or `https://` URL.
    #[error("api_base must be an absolute http:// or https:// URL without a query")]
    ApiBase,
    /// The provider needs a setting the configuration lacks.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A setting holds characters that cannot go where it is sent (a
    /// header, the URL).
    #[error("{0} contains characters that cannot be sent")]
    Invalid(String),
}
