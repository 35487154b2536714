//! [`Operation`]: which of OpenAI's request shapes a request is.

/// Which of OpenAI's endpoints a [`ChatRequest`](crate::ChatRequest) is
/// for. Chat completions, legacy text completions and embeddings share the
/// fields the layers read (`model`, `stream`, `max_tokens`) and their
/// error shape, so the same layers serve them; what differs is the
/// upstream path and the field that carries the prompt.
///
/// ```
/// use tollgate_core::Operation;
///
/// assert_eq!(Operation::Embeddings.path(), "/embeddings");
/// assert_eq!(Operation::default(), Operation::ChatCompletions);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Operation {
    /// `POST /v1/chat/completions`: `messages`.
    #[default]
    ChatCompletions,
    /// `POST /v1/completions` (legacy text completions): `prompt`.
    Completions,
    /// `POST /v1/embeddings`: `input`; never streamed.
    Embeddings,
}

impl Operation {
    /// The path of the operation under an OpenAI-compatible base URL
    /// (`https://api.openai.com/v1` + path).
    pub const fn path(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "/chat/completions",
            Operation::Completions => "/completions",
            Operation::Embeddings => "/embeddings",
        }
    }

    /// Its name in logs, metrics and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat_completions",
            Operation::Completions => "completions",
            Operation::Embeddings => "embeddings",
        }
    }

    /// The request field that carries what the model reads.
    pub(crate) const fn prompt_field(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "messages",
            Operation::Completions => "prompt",
            Operation::Embeddings => "input",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_has_its_path_name_and_field() {
        let all = [
            Operation::ChatCompletions,
            Operation::Completions,
            Operation::Embeddings,
        ];
        let paths: Vec<_> = all.iter().map(|o| o.path()).collect();
        assert_eq!(paths, ["/chat/completions", "/completions", "/embeddings"]);
        let names: Vec<_> = all.iter().map(|o| o.as_str()).collect();
        assert_eq!(names, ["chat_completions", "completions", "embeddings"]);
        let fields: Vec<_> = all.iter().map(|o| o.prompt_field()).collect();
        assert_eq!(fields, ["messages", "prompt", "input"]);
    }
}
