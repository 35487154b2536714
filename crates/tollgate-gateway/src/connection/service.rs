//! A connection's requests: counted in flight until their response ends,
//! and, on a reserve connection, answered only if they are health checks
//! or once a regular slot is theirs.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::CONNECTION;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tollgate_core::{ErrorClass, Failure};

use super::CAP_WAIT;
use super::table::{ConnState, Slot, Table};
use crate::metrics::Metrics;
use crate::metrics::ShedReason;
use crate::response::GatewayBody;
use std::future::Future;

/// A request in flight on a connection, from the service's call to the end
/// (or drop) of its response body.
#[derive(Debug)]
struct InFlight {
    state: Arc<ConnState>,
    table: Arc<Table>,
}

impl InFlight {
    fn start(state: Arc<ConnState>, table: Arc<Table>) -> Self {
        state.request_started();
        InFlight { state, table }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.request_ended(&self.table);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight until hyper
    /// drops it (written, or the stream reset).
    #[derive(Debug)]
    pub(crate) struct Tracked<B> {
        #[pin]
        body: B,
        in_flight: InFlight,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves one request of the connection `state` in `table` with `serve`
/// (the gateway's handler), counting sheds in `metrics`.
pub(crate) async fn handle<B, F, Fut>(
    metrics: &Metrics,
    state: Arc<ConnState>,
    table: Arc<Table>,
    request: Request<B>,
    serve: F,
) -> Response<Tracked<GatewayBody>>
where
    F: FnOnce(Request<B>) -> Fut,
    Fut: Future<Output = Response<GatewayBody>>,
{
    let in_flight = InFlight::start(state, table);
    let (state, table) = (&in_flight.state, &in_flight.table);
    let version = request.version();
    if version != Version::HTTP_2 {
        // hyper called the service: the HTTP/1 head is complete. (HTTP/2
        // heads are followed frame by frame.)
        state.head_finished();
    }
    let reserve = state.slot() == Slot::Reserve;
    let response = if !reserve || is_health(&request) {
        serve(request).await
    } else {
        let shed = || metrics.connection_shed(ShedReason::Cap);
        if table.promote(state, CAP_WAIT, shed).await {
            serve(request).await
        } else {
            metrics.connection_shed(ShedReason::Cap);
            overloaded()
        }
    };
    let mut response = response;
    if reserve && state.slot() == Slot::Reserve {
        // One answer per reserve connection: its slot is for the next.
        if version == Version::HTTP_2 {
            state.close_when_idle();
        } else {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response.map(|body| Tracked { body, in_flight })
}

/// Liveness and readiness: what a reserve connection always answers.
fn is_health<B>(request: &Request<B>) -> bool {
    (request.method() == Method::GET || request.method() == Method::HEAD)
        && matches!(
            request.uri().path(),
            "/health" | "/health/liveliness" | "/health/liveness" | "/health/readiness"
        )
}

/// The answer beyond the connection cap.
fn overloaded() -> Response<GatewayBody> {
    Failure::new(
        ErrorClass::Internal,
        "The gateway is at its connection limit; retry shortly.",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
    .with_code("overloaded")
    .with_retry_after(Duration::from_secs(1))
    .to_response()
}
