//! `tollgate.mock.<deployment id>`: how a `mock/` deployment behaves.

/// How one `mock/` deployment behaves (`tollgate.mock.<deployment id>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockSettings {
    /// `latency_ms`: wait before sending headers.
    pub latency_ms: u64,
    /// `chunk_delay_ms`: wait between SSE chunks.
    pub chunk_delay_ms: u64,
    /// `fault`: what goes wrong, if anything.
    pub fault: Option<MockFault>,
    /// `fail_every`: inject the fault on every Nth request; 1 means always.
    pub fail_every: u32,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            latency_ms: 0,
            chunk_delay_ms: 0,
            fault: None,
            fail_every: 1,
        }
    }
}

/// A fault the mock provider injects (`fault: { kind: ..., ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockFault {
    /// `kind: error_status`: answer with this HTTP status (400–599) and an
    /// OpenAI-shaped error body.
    ErrorStatus {
        /// `status`.
        status: u16,
    },
    /// `kind: stream_error`: send an SSE error event after this many chunks.
    StreamError {
        /// `after_chunks`, default 0.
        after_chunks: u32,
    },
    /// `kind: stall`: stop sending, but keep the connection open, after this many chunks.
    Stall {
        /// `after_chunks`, default 0.
        after_chunks: u32,
    },
    /// `kind: cut`: close the connection mid-stream after this many chunks.
    Cut {
        /// `after_chunks`, default 0.
        after_chunks: u32,
    },
}

impl MockFault {
    /// The `kind` names, in the order messages list them.
    pub const KINDS: [&'static str; 4] = ["error_status", "stream_error", "stall", "cut"];

    /// The `kind` name.
    pub const fn kind(&self) -> &'static str {
        match self {
            MockFault::ErrorStatus { .. } => "error_status",
            MockFault::StreamError { .. } => "stream_error",
            MockFault::Stall { .. } => "stall",
            MockFault::Cut { .. } => "cut",
        }
    }
}
