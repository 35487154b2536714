use bytes::Bytes;

/// One unit of an event stream, as [`SseParser`](super::SseParser) yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A dispatched event: a block of fields ended by a blank line that had at
    /// least one `data` field.
    Event(Event),
    /// A comment line, without the leading `:` and without one space after it.
    ///
    /// Comments carry no meaning in SSE, but upstreams use them as keep-alives
    /// (OpenRouter sends `: OPENROUTER PROCESSING` while a request is queued),
    /// and a proxy may want to forward or count them.
    Comment(Bytes),
}

/// A dispatched server-sent event.
///
/// Values are raw bytes exactly as they were on the wire: the parser does not
/// decode UTF-8, because a proxy forwards bytes and `serde_json::from_slice`
/// validates them anyway. Use [`Event::data_str`] when text is needed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event` field of this event, if it had one.
    ///
    /// `None` and an empty value both mean the default type, `message`.
    pub event: Option<Bytes>,
    /// The `data` fields of this event, joined with `\n`.
    pub data: Bytes,
    /// The `id` field of this event, if it had one (and it contained no NUL).
    ///
    /// This is the id written in *this* event only. The spec's "last event
    /// ID", which carries over to later events, is
    /// [`SseParser::last_event_id`](super::SseParser::last_event_id).
    pub id: Option<Bytes>,
    /// The `retry` field of this event in milliseconds, if it had a valid one.
    pub retry: Option<u64>,
}

impl Event {
    /// An event with the given data and no other field: what OpenAI-style
    /// streams send.
    pub fn new(data: impl Into<Bytes>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// Whether this is the OpenAI end-of-stream sentinel, `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.as_ref() == b"[DONE]"
    }

    /// The data as UTF-8 text.
    ///
    /// # Errors
    ///
    /// If the data is not valid UTF-8.
    pub fn data_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.data)
    }
}

/// The data of a raw event (its bytes as a stream carried them, blank line
/// included) that is a single `data:` line — the common case — as a slice
/// of it, found without the parser; `None` for any other event, which the
/// [`SseParser`](super::SseParser) reads.
pub fn single_line_data(raw_event: &[u8]) -> Option<&[u8]> {
    let rest = raw_event.strip_prefix(b"data:")?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let end = rest
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |last| last + 1);
    let value = &rest[..end];
    // No early exit: the compiler turns this into a vector scan.
    let breaks = value
        .iter()
        .fold(false, |found, &b| found | (b == b'\n') | (b == b'\r'));
    (!breaks).then_some(value)
}
