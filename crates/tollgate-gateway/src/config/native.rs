//! The `litellm_params` of native providers (Azure, Bedrock, Vertex AI, …),
//! typed, so a translation layer finds them validated and the secrets among
//! them kept as [`Secret`]s.

use super::provider::Provider;
use super::secret::Secret;

/// `litellm_params` a native provider reads. Every field is `None` when the
/// config (and, where LiteLLM reads one, its environment variable) gives none.
#[derive(Debug, Clone, Default)]
pub struct NativeParams {
    /// `api_version` (Azure; `AZURE_API_VERSION`).
    pub api_version: Option<String>,
    /// `azure_ad_token` (Azure; `AZURE_AD_TOKEN`): a Microsoft Entra ID
    /// token, sent as `Authorization: Bearer` when there is no `api_key`.
    pub azure_ad_token: Option<Secret>,
    /// `aws_access_key_id` (Bedrock; `AWS_ACCESS_KEY_ID`).
    pub aws_access_key_id: Option<Secret>,
    /// `aws_secret_access_key` (Bedrock; `AWS_SECRET_ACCESS_KEY`).
    pub aws_secret_access_key: Option<Secret>,
    /// `aws_session_token` (Bedrock; `AWS_SESSION_TOKEN`).
    pub aws_session_token: Option<Secret>,
    /// `aws_region_name` (Bedrock; `AWS_REGION_NAME`, `AWS_REGION`,
    /// `AWS_DEFAULT_REGION`).
    pub aws_region_name: Option<String>,
    /// `aws_bedrock_runtime_endpoint`: a Bedrock endpoint of its own.
    pub aws_bedrock_runtime_endpoint: Option<String>,
    /// `vertex_project` (Vertex AI; `VERTEXAI_PROJECT`).
    pub vertex_project: Option<String>,
    /// `vertex_location` (Vertex AI; `VERTEXAI_LOCATION`).
    pub vertex_location: Option<String>,
    /// `vertex_credentials`: a service-account JSON file's path or its text
    /// (Vertex AI; `GOOGLE_APPLICATION_CREDENTIALS`).
    pub vertex_credentials: Option<Secret>,
}

impl NativeParams {
    /// The `litellm_params` keys these fields are read from.
    pub const KEYS: [&'static str; 10] = [
        "api_version",
        "azure_ad_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_region_name",
        "aws_bedrock_runtime_endpoint",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
    ];

    /// Whether the key holds a secret.
    pub(crate) fn is_secret(key: &str) -> bool {
        matches!(
            key,
            "azure_ad_token"
                | "aws_access_key_id"
                | "aws_secret_access_key"
                | "aws_session_token"
                | "vertex_credentials"
        )
    }

    /// The environment variables LiteLLM falls back to for a key, in order.
    pub(crate) fn env_fallbacks(key: &str) -> &'static [&'static str] {
        match key {
            "api_version" => &["AZURE_API_VERSION"],
            "azure_ad_token" => &["AZURE_AD_TOKEN"],
            "aws_access_key_id" => &["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key" => &["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token" => &["AWS_SESSION_TOKEN"],
            "aws_region_name" => &["AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION"],
            "vertex_project" => &["VERTEXAI_PROJECT", "VERTEX_PROJECT"],
            "vertex_location" => &["VERTEXAI_LOCATION", "VERTEX_LOCATION"],
            "vertex_credentials" => &["GOOGLE_APPLICATION_CREDENTIALS"],
            _ => &[],
        }
    }

    /// Which of the parameters `provider` needs are missing (the keys), for
    /// the reason a deployment is disabled. `has_base` says whether an
    /// `api_base` is known.
    pub fn missing(&self, provider: Provider, has_base: bool) -> Vec<&'static str> {
        let mut missing = Vec::new();
        match provider {
            Provider::Azure => {
                if !has_base {
                    missing.push("api_base");
                }
                if self.api_version.is_none() {
                    missing.push("api_version");
                }
            }
            Provider::AzureAi if !has_base => missing.push("api_base"),
            Provider::Bedrock => {
                if self.aws_region_name.is_none() {
                    missing.push("aws_region_name");
                }
                if self.aws_access_key_id.is_none() {
                    missing.push("aws_access_key_id");
                }
                if self.aws_secret_access_key.is_none() {
                    missing.push("aws_secret_access_key");
                }
            }
            // The project defaults to the key file's `project_id`, as in
            // LiteLLM.
            Provider::VertexAi if self.vertex_credentials.is_none() => {
                missing.push("vertex_credentials");
            }
            _ => {}
        }
        missing
    }

    /// Why parameters that are all set still cannot work, for the reason a
    /// deployment is disabled: a Vertex AI key file that cannot be read
    /// (LiteLLM only fails on the first call; the gateway says so at start).
    pub fn unusable(&self, provider: Provider) -> Option<String> {
        let credentials = self.vertex_credentials.as_ref()?.expose();
        let is_path = !credentials.trim_start().starts_with('{');
        (provider == Provider::VertexAi && is_path && std::fs::metadata(credentials).is_err())
            .then(|| "the vertex_credentials file cannot be read".to_owned())
    }

    pub(crate) fn set_text(&mut self, key: &str, value: String) {
        match key {
            "api_version" => self.api_version = Some(value),
            "aws_region_name" => self.aws_region_name = Some(value),
            "aws_bedrock_runtime_endpoint" => self.aws_bedrock_runtime_endpoint = Some(value),
            "vertex_project" => self.vertex_project = Some(value),
            "vertex_location" => self.vertex_location = Some(value),
            _ => {}
        }
    }

    pub(crate) fn set_secret(&mut self, key: &str, value: Secret) {
        match key {
            "azure_ad_token" => self.azure_ad_token = Some(value),
            "aws_access_key_id" => self.aws_access_key_id = Some(value),
            "aws_secret_access_key" => self.aws_secret_access_key = Some(value),
            "aws_session_token" => self.aws_session_token = Some(value),
            "vertex_credentials" => self.vertex_credentials = Some(value),
            _ => {}
        }
    }

    pub(crate) fn is_set(&self, key: &str) -> bool {
        match key {
            "api_version" => self.api_version.is_some(),
            "azure_ad_token" => self.azure_ad_token.is_some(),
            "aws_access_key_id" => self.aws_access_key_id.is_some(),
            "aws_secret_access_key" => self.aws_secret_access_key.is_some(),
            "aws_session_token" => self.aws_session_token.is_some(),
            "aws_region_name" => self.aws_region_name.is_some(),
            "aws_bedrock_runtime_endpoint" => self.aws_bedrock_runtime_endpoint.is_some(),
            "vertex_project" => self.vertex_project.is_some(),
            "vertex_location" => self.vertex_location.is_some(),
            "vertex_credentials" => self.vertex_credentials.is_some(),
            _ => false,
        }
    }
}
