//! The floor: the least a Rust reverse proxy does.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The floor proxy's response body: the upstream's, passed through, or
/// nothing (a 502 when the upstream cannot be reached).
pub type FloorBody = Either<Incoming, Empty<Bytes>>;

/// Forwards every request on `listener` to `upstream` (an `http://host:port`
/// authority), streaming both bodies through untouched, until the task is
/// dropped.
///
/// This is the floor the gateway is measured against: hyper's HTTP/1.1
/// server (keep-alive, `TCP_NODELAY`) over hyper-util's pooled client, one
/// task per connection — no routing, no parsing, no headers added or
/// removed, no logs. Whatever the gateway costs above it is the price of
/// its features.
pub async fn serve(listener: TcpListener, upstream: Authority) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| forward(client.clone(), upstream.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: Authority,
    request: Request<Incoming>,
) -> Result<Response<FloorBody>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let mut uri = Uri::builder().scheme(Scheme::HTTP).authority(upstream);
    if let Some(path) = parts.uri.path_and_query() {
        uri = uri.path_and_query(path.clone());
    }
    let Ok(uri) = uri.build() else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    parts.uri = uri;
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(status: StatusCode) -> Response<FloorBody> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = status;
    response
}
