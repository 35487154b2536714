//! In-process gateways over in-memory upstreams named by host, for tests
//! that run under paused tokio time (no real socket), and the replies they
//! script.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tollgate_gateway::upstream::UpstreamClient;
use tollgate_gateway::{Gateway, config};
use tollgate_testkit::{Reply, Upstream, openai};

use super::{chat_body, sse_data, streamed_text};

/// Upstreams by host; a host not among them refuses every connection.
pub struct Net {
    hosts: HashMap<&'static str, Arc<Upstream>>,
}

impl Net {
    pub async fn new(hosts: &[&'static str]) -> Net {
        let mut map = HashMap::new();
        for host in hosts {
            map.insert(*host, Arc::new(Upstream::start().await));
        }
        Net { hosts: map }
    }

    pub fn get(&self, host: &str) -> &Upstream {
        &self.hosts[host]
    }

    /// A gateway for `yaml` whose upstream client reaches these hosts in
    /// memory; every key variable reads `sk-test`.
    pub fn gateway(&self, yaml: &str) -> Gateway {
        let loaded = config::load_str(yaml, &|_| Some("sk-test".to_owned())).unwrap();
        let hosts = self.hosts.clone();
        let client =
            UpstreamClient::in_memory(Gateway::client_config(&loaded.config), move |uri| match uri
                .host()
                .and_then(|host| hosts.get(host))
            {
                Some(upstream) => Ok(upstream.connect_in_memory()),
                None => Err(std::io::ErrorKind::ConnectionRefused.into()),
            });
        Gateway::with_client(&loaded.config, client).unwrap()
    }
}

/// A completion answered by `model`.
pub fn completion(model: &str, content: &str) -> Reply {
    let mut body = openai::chat_completion(content);
    body["model"] = json!(model);
    Reply::json(200, body)
}

/// A whole stream of `parts` answered by `model`, with a usage chunk.
pub fn stream(model: &str, parts: &[&str]) -> Reply {
    let mut reply = Reply::sse();
    for mut chunk in openai::chunks(parts) {
        chunk["model"] = json!(model);
        reply = reply.data(chunk);
    }
    reply.data(openai::usage_chunk(7, 3)).done()
}

/// A 503 overloaded answer.
pub fn unavailable() -> Reply {
    Reply::json(503, openai::error_body("overloaded", "server_error", None))
}

/// A chat request for `model` with `headers`, its whole answer collected.
pub async fn chat_with(
    gateway: &Gateway,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
) -> http::Response<Bytes> {
    let mut request = http::Request::post("/v1/chat/completions");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(chat_body(model, stream))))
        .unwrap();
    let (parts, body) = gateway.handle(request).await.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(parts, body)
}

/// A chat request for `model`, its whole answer collected.
pub async fn chat(gateway: &Gateway, model: &str, stream: bool) -> http::Response<Bytes> {
    chat_with(gateway, model, stream, &[]).await
}

/// A stream's text and whether it ended with `[DONE]`.
pub fn streamed(body: &[u8]) -> (String, bool) {
    let events = sse_data(body);
    let done = events.last().is_some_and(|e| e == "[DONE]");
    (streamed_text(&events), done)
}
