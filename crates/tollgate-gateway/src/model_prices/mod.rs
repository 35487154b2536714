//! What LiteLLM knows about every model: a snapshot of its
//! `model_prices_and_context_window.json` (per-token prices, cache and
//! reasoning token prices, context window, provider, `supports_*` flags),
//! trimmed to the providers and fields Tollgate reads.
//!
//! The snapshot (`snapshot.json`, its `source` naming the LiteLLM release it
//! came from) is embedded in the binary and parsed once, on first use.
//! `scripts/refresh-model-prices` regenerates it. A local file in the same
//! format — or LiteLLM's own, untrimmed — given as `tollgate.model_prices_path`
//! goes over it, model by model.
//!
//! ```
//! use tollgate_gateway::model_prices::ModelPrices;
//!
//! let prices = ModelPrices::snapshot();
//! let facts = prices.get("claude-haiku-4-5-20251001").unwrap();
//! assert_eq!(&*facts.litellm_provider, "anthropic");
//! assert!(facts.input_cost_per_token.is_some());
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use serde_json::Value;
use tollgate_cost::{TokenPrices, Usd};

const SNAPSHOT: &str = include_str!("snapshot.json");

static PARSED: LazyLock<Arc<ModelPrices>> = LazyLock::new(|| {
    // The snapshot is part of the crate and a unit test parses it.
    Arc::new(ModelPrices::from_json(SNAPSHOT).unwrap_or_default())
});

/// What one model's entry says.
///
/// Two thousand of these live for the whole process, so they are kept
/// small: texts as boxed `str`s, the provider and the flags shared between
/// entries (a hundred providers and a few dozen flags across them all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelFacts {
    /// LiteLLM's provider name for it (`openai`, `vertex_ai-language-models`).
    pub litellm_provider: Arc<str>,
    /// LiteLLM's `mode` (`embedding`, `completion`, …); `None` for chat,
    /// which the snapshot leaves unsaid.
    pub mode: Option<Arc<str>>,
    /// `input_cost_per_token`, as the decimal text LiteLLM wrote.
    pub input_cost_per_token: Option<Box<str>>,
    /// `output_cost_per_token`.
    pub output_cost_per_token: Option<Box<str>>,
    /// `cache_read_input_token_cost`.
    pub cache_read_input_token_cost: Option<Box<str>>,
    /// `cache_creation_input_token_cost`.
    pub cache_creation_input_token_cost: Option<Box<str>>,
    /// `output_cost_per_reasoning_token`.
    pub output_cost_per_reasoning_token: Option<Box<str>>,
    /// `max_input_tokens`: the context window.
    pub max_input_tokens: Option<u64>,
    /// `max_output_tokens`.
    pub max_output_tokens: Option<u64>,
    /// The `supports_*` flags that are true, without the prefix
    /// (`function_calling`, `vision`, `reasoning`, …).
    pub supports: Box<[Arc<str>]>,
}

impl ModelFacts {
    /// Its per-token prices, when both the input and the output price are known.
    pub fn prices(&self) -> Option<TokenPrices> {
        let usd = |text: &Option<Box<str>>| text.as_deref().and_then(|t| Usd::parse(t).ok());
        Some(TokenPrices {
            input: usd(&self.input_cost_per_token)?,
            output: usd(&self.output_cost_per_token)?,
            cache_read: usd(&self.cache_read_input_token_cost),
            cache_write: usd(&self.cache_creation_input_token_cost),
            reasoning: usd(&self.output_cost_per_reasoning_token),
        })
    }

    /// Its mode: `chat` unless the entry says otherwise.
    pub fn mode(&self) -> &str {
        self.mode.as_deref().unwrap_or("chat")
    }

    /// Whether the `supports_<flag>` flag is true.
    pub fn supports(&self, flag: &str) -> bool {
        self.supports.iter().any(|f| &**f == flag)
    }
}

/// Model facts by LiteLLM's model name (`gpt-4o`, `groq/llama3-8b-8192`).
#[derive(Clone, Default)]
pub struct ModelPrices {
    // Boxed: the table's empty slots then cost a pointer, not a whole entry
    // (1 MiB of slots for 2,059 entries otherwise).
    models: HashMap<Box<str>, Box<ModelFacts>>,
    source: String,
}

impl std::fmt::Debug for ModelPrices {
    /// The source and the size: thousands of entries would drown a config's `Debug`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelPrices")
            .field("source", &self.source)
            .field("models", &self.models.len())
            .finish()
    }
}

/// Why a model price file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelPricesError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It is not such a JSON object.
    #[error("not a model price list: {0}")]
    Format(String),
}

impl ModelPrices {
    /// The embedded snapshot, parsed on first use.
    pub fn snapshot() -> Arc<ModelPrices> {
        PARSED.clone()
    }

    /// Where the facts came from (`litellm 1.110.2`), for reports.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How many models it knows.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether it knows no model.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The facts of `model`, by its exact name, else its lowercase name.
    pub fn get(&self, model: &str) -> Option<&ModelFacts> {
        self.models
            .get(model)
            .or_else(|| self.models.get(model.to_ascii_lowercase().as_str()))
            .map(|facts| &**facts)
    }

    /// The facts of a deployment's model: `provider/model` first (LiteLLM
    /// keys most providers' models so), then `model`.
    pub fn for_deployment(&self, provider: &str, model: &str) -> Option<&ModelFacts> {
        self.get(&format!("{provider}/{model}"))
            .or_else(|| self.get(model))
    }

    /// These facts with the file at `path` over them, model by model.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a model price list.
    pub fn with_file(&self, path: &Path) -> Result<ModelPrices, ModelPricesError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelPricesError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let local = ModelPrices::from_json(&text)?;
        let mut merged = self.clone();
        merged.source = format!("{} + {}", self.source, path.display());
        merged.models.extend(local.models);
        Ok(merged)
    }

    /// Reads the snapshot's format, `{"source": …, "models": {name: entry}}`,
    /// or LiteLLM's own file, `{name: entry}` (its `sample_spec` skipped).
    /// Prices may be JSON numbers or decimal strings.
    ///
    /// # Errors
    ///
    /// When the text is not a JSON object of such entries.
    pub fn from_json(text: &str) -> Result<ModelPrices, ModelPricesError> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| ModelPricesError::Format(e.to_string()))?;
        let Value::Object(mut root) = root else {
            return Err(ModelPricesError::Format("expected a JSON object".into()));
        };
        let source = match root.get("source") {
            Some(Value::Object(source)) => source
                .get("pypi")
                .or_else(|| source.get("file"))
                .and_then(Value::as_str)
                .unwrap_or("local file")
                .to_owned(),
            _ => "local file".to_owned(),
        };
        let models = match root.remove("models") {
            Some(Value::Object(models)) => models,
            Some(_) => return Err(ModelPricesError::Format("`models` is not an object".into())),
            None => root,
        };
        let mut shared = Interned::default();
        let mut models: HashMap<Box<str>, Box<ModelFacts>> = models
            .into_iter()
            .filter(|(name, _)| name != "sample_spec" && name != "source")
            .filter_map(|(name, entry)| {
                Some((name.into_boxed_str(), Box::new(facts(&entry, &mut shared)?)))
            })
            .collect();
        models.shrink_to_fit();
        Ok(ModelPrices { models, source })
    }
}

/// The texts many entries repeat (providers, modes, flags), one copy each.
#[derive(Default)]
struct Interned(std::collections::HashSet<Arc<str>>);

impl Interned {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = text.into();
        self.0.insert(shared.clone());
        shared
    }
}

/// One entry; `None` when it names no provider.
fn facts(entry: &Value, shared: &mut Interned) -> Option<ModelFacts> {
    let entry = entry.as_object()?;
    let price = |key: &str| match entry.get(key)? {
        Value::String(text) => Some(text.as_str().into()),
        Value::Number(number) => Some(number.to_string().into_boxed_str()),
        _ => None,
    };
    let count = |key: &str| entry.get(key).and_then(Value::as_u64);
    let mut supports: Vec<Arc<str>> = match entry.get("supports") {
        Some(Value::Array(flags)) => flags
            .iter()
            .filter_map(|f| f.as_str().map(|flag| shared.get(flag)))
            .collect(),
        _ => Vec::new(),
    };
    // LiteLLM's own file writes each flag as `supports_x: true`.
    for (key, value) in entry {
        if let Some(flag) = key.strip_prefix("supports_")
            && value == &Value::Bool(true)
        {
            supports.push(shared.get(flag));
        }
    }
    Some(ModelFacts {
        litellm_provider: shared.get(entry.get("litellm_provider")?.as_str()?),
        mode: entry
            .get("mode")
            .and_then(Value::as_str)
            .filter(|mode| *mode != "chat")
            .map(|mode| shared.get(mode)),
        input_cost_per_token: price("input_cost_per_token"),
        output_cost_per_token: price("output_cost_per_token"),
        cache_read_input_token_cost: price("cache_read_input_token_cost"),
        cache_creation_input_token_cost: price("cache_creation_input_token_cost"),
        output_cost_per_reasoning_token: price("output_cost_per_reasoning_token"),
        max_input_tokens: count("max_input_tokens"),
        max_output_tokens: count("max_output_tokens"),
        supports: supports.into_boxed_slice(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_parses_and_names_its_release() {
        let prices = ModelPrices::from_json(SNAPSHOT).expect("the snapshot parses");
        assert!(prices.len() > 1000, "{}", prices.len());
        assert!(
            prices.source().starts_with("litellm "),
            "{}",
            prices.source()
        );
        let gpt = prices.get("gpt-4o").unwrap();
        assert_eq!(&*gpt.litellm_provider, "openai");
        assert_eq!(gpt.input_cost_per_token.as_deref(), Some("2.5e-06"));
        assert_eq!(
            gpt.prices().unwrap().input,
            Usd::parse("0.0000025").unwrap()
        );
        assert!(gpt.supports("function_calling"));
        assert_eq!(gpt.max_input_tokens, Some(128_000));
    }

    #[test]
    fn litellm_own_format_and_numbers_are_read() {
        let text = r#"{"sample_spec": {"litellm_provider": "x"},
            "acme/m": {"litellm_provider": "openai", "input_cost_per_token": 1e-06,
                       "output_cost_per_token": 0.000002, "supports_vision": true,
                       "max_input_tokens": 8192}}"#;
        let prices = ModelPrices::from_json(text).unwrap();
        assert_eq!(prices.len(), 1);
        let facts = prices.get("acme/m").unwrap();
        let usd = facts.prices().unwrap();
        assert_eq!(usd.input, Usd::parse("0.000001").unwrap());
        assert_eq!(usd.output, Usd::parse("0.000002").unwrap());
        assert!(facts.supports("vision"));
        assert!(ModelPrices::from_json("[]").is_err());
    }

    #[test]
    fn embedding_models_say_so_and_chat_models_read_as_chat() {
        let prices = ModelPrices::snapshot();
        let embed = prices.get("text-embedding-3-small").unwrap();
        assert_eq!(embed.mode(), "embedding");
        assert!(embed.prices().is_some());
        assert_eq!(prices.get("gpt-4o").unwrap().mode(), "chat");
        let own =
            ModelPrices::from_json(r#"{"m": {"litellm_provider": "openai", "mode": "chat"}}"#)
                .unwrap();
        assert_eq!(own.get("m").unwrap().mode, None);
    }

    #[test]
    fn a_deployment_finds_its_provider_prefixed_entry() {
        let prices = ModelPrices::snapshot();
        let groq = prices.for_deployment("groq", "openai/gpt-oss-20b");
        assert_eq!(groq.map(|f| &*f.litellm_provider), Some("groq"));
    }
}
