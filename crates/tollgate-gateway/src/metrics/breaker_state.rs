//! The circuit-breaker state as the metrics label it.

/// A circuit breaker's state, as the `tollgate_circuit_breaker_state` gauge
/// and the `to` label of transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BreakerStateLabel {
    /// Requests flow (gauge 0).
    Closed,
    /// A probe is allowed through (gauge 1).
    HalfOpen,
    /// Requests are rejected (gauge 2).
    Open,
}

impl From<tollgate_breaker::State> for BreakerStateLabel {
    fn from(state: tollgate_breaker::State) -> Self {
        match state {
            tollgate_breaker::State::Closed => BreakerStateLabel::Closed,
            tollgate_breaker::State::HalfOpen => BreakerStateLabel::HalfOpen,
            tollgate_breaker::State::Open => BreakerStateLabel::Open,
        }
    }
}

impl BreakerStateLabel {
    /// Every state, in gauge order.
    pub(crate) const ALL: [BreakerStateLabel; 3] = [
        BreakerStateLabel::Closed,
        BreakerStateLabel::HalfOpen,
        BreakerStateLabel::Open,
    ];

    /// The label value: `closed`, `half_open`, `open`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            BreakerStateLabel::Closed => "closed",
            BreakerStateLabel::HalfOpen => "half_open",
            BreakerStateLabel::Open => "open",
        }
    }

    /// The gauge value: 0, 1, 2.
    pub(crate) const fn value(self) -> u8 {
        match self {
            BreakerStateLabel::Closed => 0,
            BreakerStateLabel::HalfOpen => 1,
            BreakerStateLabel::Open => 2,
        }
    }

    /// Its position in [`ALL`](Self::ALL), for arrays of series.
    pub(super) const fn index(self) -> usize {
        self.value() as usize
    }
}
