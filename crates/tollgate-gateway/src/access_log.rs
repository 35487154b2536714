//! One structured log line per request.

use std::sync::Arc;

use tokio::time::Instant;
use tollgate_core::ErrorClass;

/// What the access log line says about a request; written once, when the
/// response body ends or is dropped (so a stream is logged when it finishes,
/// and a client that hangs up is logged as such).
///
/// It never holds prompt or completion text, nor any key.
#[derive(Debug)]
pub(crate) struct AccessLog {
    pub(crate) request_id: Arc<str>,
    pub(crate) route: &'static str,
    pub(crate) model_group: Option<Arc<str>>,
    pub(crate) deployment: Option<Arc<str>>,
    pub(crate) status: u16,
    pub(crate) class: Option<ErrorClass>,
    pub(crate) stream: bool,
    pub(crate) start: Instant,
    pub(crate) finished: bool,
}

impl AccessLog {
    pub(crate) fn new(request_id: Arc<str>, route: &'static str, start: Instant) -> Self {
        AccessLog {
            request_id,
            route,
            model_group: None,
            deployment: None,
            status: 0,
            class: None,
            stream: false,
            start,
            finished: false,
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let latency_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let outcome = if !self.finished {
            "client_gone"
        } else if self.class.is_some() {
            "error"
        } else {
            "ok"
        };
        tracing::info!(
            target: "tollgate::access",
            request_id = %self.request_id,
            route = self.route,
            model = self.model_group.as_deref().unwrap_or(""),
            deployment = self.deployment.as_deref().unwrap_or(""),
            status = self.status,
            class = self.class.map_or("", ErrorClass::as_str),
            stream = self.stream,
            latency_ms = (latency_ms * 1000.0).round() / 1000.0,
            outcome,
            "request"
        );
    }
}
