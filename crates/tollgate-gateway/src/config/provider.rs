//! The providers a config may name, with LiteLLM's defaults for each: the
//! model prefix, the `api_base` used when the deployment gives none, and the
//! environment variables the key (and base) are read from when it gives none.
//!
//! The defaults come from LiteLLM's source (`litellm/litellm_core_utils/
//! get_llm_provider_logic.py`, `_get_openai_compatible_provider_info`, and each
//! `litellm/llms/<provider>/` config class); the table is our own.

use std::fmt;

/// How Tollgate calls a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI's chat completions API, at the provider's base URL, with a
    /// bearer key: served by the plain HTTP provider path.
    OpenAiCompatible,
    /// OpenRouter, through its normalizer.
    OpenRouter,
    /// The built-in mock.
    Mock,
    /// A native protocol (Anthropic Messages, Gemini, Azure, Bedrock, Vertex
    /// AI) whose translation is not wired into the gateway yet: its
    /// deployments load, are validated, and start disabled.
    Native,
}

macro_rules! providers {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $kind:ident, base $base:expr, base_var $base_var:expr,
        keys [$($key:literal),*], key_required $required:literal, path $path:expr;
    )*) => {
        /// The providers Tollgate can call, by LiteLLM's name (the model prefix).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Provider {
            $($(#[$doc])* $variant,)*
        }

        impl Provider {
    /// Whether the gateway serves this native provider through its
    /// translation (`tollgate-providers`); the other native ones start
    /// disabled.
    pub fn is_wired(self) -> bool {
        matches!(
            self,
            Provider::Anthropic
                | Provider::Azure
                | Provider::Gemini
                | Provider::Bedrock
                | Provider::VertexAi
        )
    }

            /// Every provider, in the order messages list them.
            pub const ALL: &'static [Provider] = &[$(Provider::$variant,)*];

            const fn spec(self) -> Spec {
                match self {
                    $(Provider::$variant => Spec {
                        name: $name,
                        kind: ProviderKind::$kind,
                        api_base: $base,
                        base_var: $base_var,
                        key_vars: &[$($key),*],
                        key_required: $required,
                        compat_path: $path,
                    },)*
                }
            }
        }
    };
}

struct Spec {
    name: &'static str,
    kind: ProviderKind,
    api_base: Option<&'static str>,
    base_var: Option<&'static str>,
    key_vars: &'static [&'static str],
    key_required: bool,
    compat_path: Option<&'static str>,
}

providers! {
    /// `openai/…`: OpenAI, or any OpenAI-compatible server given by `api_base`.
    OpenAi = "openai", OpenAiCompatible, base Some("https://api.openai.com/v1"),
        base_var Some("OPENAI_API_BASE"), keys ["OPENAI_API_KEY"], key_required true, path None;
    /// `openrouter/…`: OpenRouter.
    OpenRouter = "openrouter", OpenRouter, base Some("https://openrouter.ai/api/v1"),
        base_var Some("OPENROUTER_API_BASE"), keys ["OPENROUTER_API_KEY"], key_required true, path None;
    /// `mock/…`: the built-in mock provider, for demos and tests without a network.
    Mock = "mock", Mock, base None, base_var None, keys [], key_required false, path None;
    /// `custom_openai/…`: an OpenAI-compatible server; `api_base` is required.
    CustomOpenAi = "custom_openai", OpenAiCompatible, base None, base_var None,
        keys ["OPENAI_API_KEY"], key_required false, path None;
    /// `text-completion-openai/…`: OpenAI's models, served through chat completions.
    TextCompletionOpenAi = "text-completion-openai", OpenAiCompatible,
        base Some("https://api.openai.com/v1"), base_var Some("OPENAI_API_BASE"),
        keys ["OPENAI_API_KEY"], key_required true, path None;
    /// `groq/…`: Groq.
    Groq = "groq", OpenAiCompatible, base Some("https://api.groq.com/openai/v1"),
        base_var Some("GROQ_API_BASE"), keys ["GROQ_API_KEY"], key_required true, path None;
    /// `mistral/…`: Mistral AI.
    Mistral = "mistral", OpenAiCompatible, base Some("https://api.mistral.ai/v1"),
        base_var Some("MISTRAL_API_BASE"), keys ["MISTRAL_API_KEY"], key_required true, path None;
    /// `deepseek/…`: DeepSeek (LiteLLM's default base is its `/beta` endpoint).
    Deepseek = "deepseek", OpenAiCompatible, base Some("https://api.deepseek.com/beta"),
        base_var Some("DEEPSEEK_API_BASE"), keys ["DEEPSEEK_API_KEY"], key_required true, path None;
    /// `together_ai/…`: Together AI.
    TogetherAi = "together_ai", OpenAiCompatible, base Some("https://api.together.xyz/v1"),
        base_var Some("TOGETHER_AI_API_BASE"),
        keys ["TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"],
        key_required true, path None;
    /// `fireworks_ai/…`: Fireworks AI.
    FireworksAi = "fireworks_ai", OpenAiCompatible,
        base Some("https://api.fireworks.ai/inference/v1"), base_var Some("FIREWORKS_API_BASE"),
        keys ["FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"],
        key_required true, path None;
    /// `xai/…`: xAI (Grok).
    Xai = "xai", OpenAiCompatible, base Some("https://api.x.ai/v1"),
        base_var Some("XAI_API_BASE"), keys ["XAI_API_KEY"], key_required true, path None;
    /// `perplexity/…`: Perplexity.
    Perplexity = "perplexity", OpenAiCompatible, base Some("https://api.perplexity.ai"),
        base_var Some("PERPLEXITY_API_BASE"), keys ["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
        key_required true, path None;
    /// `cerebras/…`: Cerebras.
    Cerebras = "cerebras", OpenAiCompatible, base Some("https://api.cerebras.ai/v1"),
        base_var Some("CEREBRAS_API_BASE"), keys ["CEREBRAS_API_KEY"], key_required true, path None;
    /// `deepinfra/…`: DeepInfra.
    Deepinfra = "deepinfra", OpenAiCompatible, base Some("https://api.deepinfra.com/v1/openai"),
        base_var Some("DEEPINFRA_API_BASE"), keys ["DEEPINFRA_API_KEY"], key_required true, path None;
    /// `ollama/…`: Ollama, through its OpenAI-compatible `/v1` endpoint.
    Ollama = "ollama", OpenAiCompatible, base Some("http://localhost:11434"),
        base_var Some("OLLAMA_API_BASE"), keys ["OLLAMA_API_KEY"], key_required false, path Some("/v1");
    /// `ollama_chat/…`: Ollama as well (LiteLLM's `/api/chat` flavour).
    OllamaChat = "ollama_chat", OpenAiCompatible, base Some("http://localhost:11434"),
        base_var Some("OLLAMA_API_BASE"), keys ["OLLAMA_API_KEY"], key_required false, path Some("/v1");
    /// `hosted_vllm/…`: a vLLM server; `api_base` (or `HOSTED_VLLM_API_BASE`) is required.
    HostedVllm = "hosted_vllm", OpenAiCompatible, base None,
        base_var Some("HOSTED_VLLM_API_BASE"), keys ["HOSTED_VLLM_API_KEY"], key_required false, path None;
    /// `lm_studio/…`: LM Studio; `api_base` (or `LM_STUDIO_API_BASE`) is required.
    LmStudio = "lm_studio", OpenAiCompatible, base None,
        base_var Some("LM_STUDIO_API_BASE"), keys ["LM_STUDIO_API_KEY"], key_required false, path None;
    /// `huggingface/…`: Hugging Face's inference router.
    Huggingface = "huggingface", OpenAiCompatible, base Some("https://router.huggingface.co/v1"),
        base_var Some("HF_API_BASE"), keys ["HF_TOKEN", "HUGGINGFACE_API_KEY"], key_required true, path None;
    /// `nvidia_nim/…`: NVIDIA NIM.
    NvidiaNim = "nvidia_nim", OpenAiCompatible, base Some("https://integrate.api.nvidia.com/v1"),
        base_var Some("NVIDIA_NIM_API_BASE"), keys ["NVIDIA_NIM_API_KEY"], key_required true, path None;
    /// `cohere/…`: Cohere, through its OpenAI-compatible endpoint.
    Cohere = "cohere", OpenAiCompatible, base Some("https://api.cohere.ai"),
        base_var Some("COHERE_API_BASE"), keys ["COHERE_API_KEY", "CO_API_KEY"], key_required true,
        path Some("/compatibility/v1");
    /// `anthropic/…`: Anthropic's Messages API (native).
    Anthropic = "anthropic", Native, base Some("https://api.anthropic.com"),
        base_var Some("ANTHROPIC_API_BASE"), keys ["ANTHROPIC_API_KEY"], key_required true, path None;
    /// `gemini/…`: Google AI Studio's Gemini API (native).
    Gemini = "gemini", Native, base Some("https://generativelanguage.googleapis.com"),
        base_var Some("GEMINI_API_BASE"), keys ["GEMINI_API_KEY"], key_required true, path None;
    /// `azure/…`: Azure OpenAI (native: deployment URLs and `api-version`).
    Azure = "azure", Native, base None, base_var Some("AZURE_API_BASE"),
        keys ["AZURE_API_KEY", "AZURE_OPENAI_API_KEY"], key_required true, path None;
    /// `azure_ai/…`: Azure AI Foundry models (native).
    AzureAi = "azure_ai", Native, base None, base_var Some("AZURE_AI_API_BASE"),
        keys ["AZURE_AI_API_KEY"], key_required true, path None;
    /// `bedrock/…`: AWS Bedrock, Converse (native, SigV4).
    Bedrock = "bedrock", Native, base None, base_var None, keys [], key_required false, path None;
    /// `vertex_ai/…`: Google Vertex AI (native, OAuth2 service account).
    VertexAi = "vertex_ai", Native, base None, base_var None, keys [], key_required false, path None;
}

impl Provider {
    /// The LiteLLM provider name, which is also the model prefix without its `/`.
    pub const fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// How Tollgate calls it.
    pub const fn kind(self) -> ProviderKind {
        self.spec().kind
    }

    /// Parses a LiteLLM provider name (`openrouter`), with LiteLLM's aliases
    /// (`cohere_chat`, `openai_like`, `vertex_ai_beta`, `bedrock_converse`).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = match name {
            "cohere_chat" => "cohere",
            "openai_like" => "custom_openai",
            "vertex_ai_beta" => "vertex_ai",
            "bedrock_converse" => "bedrock",
            "azure_text" => "azure",
            name => name,
        };
        Self::ALL
            .iter()
            .copied()
            .find(|provider| provider.as_str() == name)
    }

    /// The provider of a `litellm_provider` value of LiteLLM's model list
    /// (`vertex_ai-language-models` is Vertex AI).
    pub fn from_litellm_provider(name: &str) -> Option<Self> {
        Self::from_name(name)
            .or_else(|| name.strip_prefix("vertex_ai-").map(|_| Provider::VertexAi))
    }

    /// The base URL LiteLLM uses when the deployment gives none.
    pub const fn default_api_base(self) -> Option<&'static str> {
        self.spec().api_base
    }

    /// The variable LiteLLM reads the base URL from when the deployment gives none.
    pub const fn base_env(self) -> Option<&'static str> {
        self.spec().base_var
    }

    /// The variables LiteLLM reads the key from when a deployment gives none,
    /// first one first.
    pub const fn key_envs(self) -> &'static [&'static str] {
        self.spec().key_vars
    }

    /// The first of [`key_envs`](Self::key_envs), the one messages name.
    pub const fn default_key_env(self) -> Option<&'static str> {
        match self.spec().key_vars {
            [first, ..] => Some(first),
            [] => None,
        }
    }

    /// Whether a deployment without a key cannot work (local servers need none).
    pub const fn key_required(self) -> bool {
        self.spec().key_required
    }

    /// The path of the OpenAI-compatible API under the provider's base URL,
    /// added when the configured base does not end with it already (LiteLLM's
    /// docs give Ollama's base as `http://localhost:11434`).
    pub const fn compat_path(self) -> Option<&'static str> {
        self.spec().compat_path
    }

    /// The URL requests go to: `api_base` (else the default), with the
    /// compatible API's path added when it is missing.
    pub fn endpoint_base(self, api_base: Option<&str>) -> Option<String> {
        let base = api_base.or(self.default_api_base())?.trim_end_matches('/');
        Some(match self.compat_path() {
            Some(path) if !base.ends_with(path) => format!("{base}{path}"),
            _ => base.to_owned(),
        })
    }

    /// The supported prefixes, `openai/, openrouter/, …`, for messages.
    pub fn supported_prefixes() -> String {
        Self::ALL
            .iter()
            .map(|provider| format!("{provider}/"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases_resolve() {
        for provider in Provider::ALL {
            assert_eq!(Provider::from_name(provider.as_str()), Some(*provider));
        }
        assert_eq!(Provider::from_name("cohere_chat"), Some(Provider::Cohere));
        assert_eq!(
            Provider::from_litellm_provider("vertex_ai-anthropic_models"),
            Some(Provider::VertexAi)
        );
        assert_eq!(Provider::from_name("acme"), None);
    }

    #[test]
    fn endpoint_base_adds_the_compatible_path_once() {
        assert_eq!(
            Provider::Ollama.endpoint_base(None).as_deref(),
            Some("http://localhost:11434/v1")
        );
        assert_eq!(
            Provider::Ollama
                .endpoint_base(Some("http://gpu:11434/v1/"))
                .as_deref(),
            Some("http://gpu:11434/v1")
        );
        assert_eq!(
            Provider::Cohere.endpoint_base(None).as_deref(),
            Some("https://api.cohere.ai/compatibility/v1")
        );
        assert_eq!(
            Provider::Groq.endpoint_base(None).as_deref(),
            Some("https://api.groq.com/openai/v1")
        );
        assert_eq!(Provider::HostedVllm.endpoint_base(None), None);
    }
}
