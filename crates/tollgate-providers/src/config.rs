//! [`ProviderConfig`]: what every provider is built from.

use std::fmt;

/// The settings of one deployment of a native provider, as LiteLLM's
/// `litellm_params` name them: one plain struct for every provider, each
/// reading the fields it uses (see the provider's constructor).
///
/// ```
/// use tollgate_providers::ProviderConfig;
///
/// let config = ProviderConfig::new()
///     .api_key("sk-ant-api03-0123456789")
///     .api_version("2023-06-01")
///     .default_max_tokens(8192)
///     .header("anthropic-beta", "prompt-caching-2024-07-31");
/// // Keys never show in debug output.
/// assert!(!format!("{config:?}").contains("0123456789"));
/// ```
#[derive(Clone, Default)]
pub struct ProviderConfig {
    pub(crate) api_base: Option<String>,
    pub(crate) api_key: Option<Secret>,
    pub(crate) bearer_token: Option<Secret>,
    pub(crate) api_version: Option<String>,
    pub(crate) deployment: Option<String>,
    pub(crate) default_max_tokens: Option<u64>,
    pub(crate) headers: Vec<(String, Secret)>,
    pub(crate) aws_access_key_id: Option<Secret>,
    pub(crate) aws_secret_access_key: Option<Secret>,
    pub(crate) aws_session_token: Option<Secret>,
    pub(crate) aws_region: Option<String>,
    pub(crate) vertex_project: Option<String>,
    pub(crate) vertex_location: Option<String>,
    pub(crate) vertex_credentials: Option<Secret>,
}

impl ProviderConfig {
    /// No settings: every provider's defaults.
    pub fn new() -> Self {
        ProviderConfig::default()
    }

    /// `api_base`: where the provider is, an absolute `http`/`https` URL.
    pub fn api_base(mut self, api_base: impl Into<String>) -> Self {
        self.api_base = Some(api_base.into());
        self
    }

    /// `api_key`: the provider key (Anthropic's `x-api-key`, Azure's
    /// `api-key`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(Secret(key.into()));
        self
    }

    /// A bearer token sent as `Authorization: Bearer …` (Azure's Entra ID
    /// token, LiteLLM's `azure_ad_token`).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(Secret(token.into()));
        self
    }

    /// `api_version`: Anthropic's `anthropic-version` header, Azure's
    /// `api-version` query parameter.
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = Some(version.into());
        self
    }

    /// The Azure deployment name; by default the request's model (LiteLLM's
    /// `azure/<deployment>`).
    pub fn deployment(mut self, deployment: impl Into<String>) -> Self {
        self.deployment = Some(deployment.into());
        self
    }

    /// The `max_tokens` sent when the client gave none, for providers that
    /// require one (Anthropic). LiteLLM sends the model's
    /// `max_output_tokens` from its price map, else 4096; the gateway passes
    /// the former here.
    pub fn default_max_tokens(mut self, max_tokens: u64) -> Self {
        self.default_max_tokens = Some(max_tokens);
        self
    }

    /// A header sent with every request (LiteLLM's `extra_headers`); it
    /// replaces one the provider would set. Values are treated as secrets.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), Secret(value.into())));
        self
    }

    /// `vertex_project`: the Google Cloud project Vertex AI bills; by
    /// default the service account's `project_id`.
    pub fn vertex_project(mut self, project: impl Into<String>) -> Self {
        self.vertex_project = Some(project.into());
        self
    }

    /// `vertex_location`: the Vertex AI region (`us-central1`, `global`...).
    pub fn vertex_location(mut self, location: impl Into<String>) -> Self {
        self.vertex_location = Some(location.into());
        self
    }

    /// `vertex_credentials`: a service account's key file, its path or its
    /// JSON text.
    pub fn vertex_credentials(mut self, credentials: impl Into<String>) -> Self {
        self.vertex_credentials = Some(Secret(credentials.into()));
        self
    }
}

/// AWS settings (Bedrock).
impl ProviderConfig {
    /// `aws_access_key_id` and `aws_secret_access_key`: the credentials
    /// Bedrock's requests are signed with (SigV4).
    pub fn aws_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.aws_access_key_id = Some(Secret(access_key_id.into()));
        self.aws_secret_access_key = Some(Secret(secret_access_key.into()));
        self
    }

    /// `aws_session_token`: a temporary credential's token, sent as
    /// `x-amz-security-token`.
    pub fn aws_session_token(mut self, token: impl Into<String>) -> Self {
        self.aws_session_token = Some(Secret(token.into()));
        self
    }

    /// `aws_region_name`: where Bedrock is called and what requests are
    /// signed for.
    pub fn aws_region(mut self, region: impl Into<String>) -> Self {
        self.aws_region = Some(region.into());
        self
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key)
            .field("bearer_token", &self.bearer_token)
            .field("api_version", &self.api_version)
            .field("deployment", &self.deployment)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("aws_access_key_id", &self.aws_access_key_id)
            .field("aws_secret_access_key", &self.aws_secret_access_key)
            .field("aws_session_token", &self.aws_session_token)
            .field("aws_region", &self.aws_region)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("vertex_project", &self.vertex_project)
            .field("vertex_location", &self.vertex_location)
            .field("vertex_credentials", &self.vertex_credentials)
            .finish()
    }
}

/// A credential whose `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
