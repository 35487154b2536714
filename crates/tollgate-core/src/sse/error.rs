/// Why an event stream could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A line was longer than the parser's limit.
    ///
    /// Raised as soon as the limit is crossed, even before the line is
    /// complete, so a stream that never sends a line break cannot make the
    /// parser buffer without bound.
    #[error("SSE line longer than {max} bytes")]
    LineTooLong {
        /// The limit that was crossed, in bytes.
        max: usize,
    },
    /// The input ended in the middle of an event or a line.
    ///
    /// The spec discards such an event silently; for an LLM proxy it means
    /// the upstream stream was cut short.
    #[error("SSE stream ended in the middle of an event")]
    Truncated,
}

/// An [`Event`](super::Event) field holds a byte its SSE encoding cannot carry.
///
/// SSE has no escaping: a line break in `event` or `id` would end the field
/// and let the rest of the value be read as further fields, and an `id`
/// containing NUL is ignored by parsers. `data` never fails, because it is
/// split across several `data:` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("SSE `{field}` field contains a byte it cannot carry (CR, LF, or NUL in `id`)")]
pub struct InvalidField {
    pub(crate) field: &'static str,
}

impl InvalidField {
    /// The name of the offending field: `"event"` or `"id"`.
    pub fn field(&self) -> &'static str {
        self.field
    }
}
