//! What the providers' unit tests share: an exchange, a client's request
//! head, and the events of a translated stream read back.

use http::Request;
use http::request::Parts;
use serde_json::{Value, json};

use crate::protocol::Exchange;

/// The exchange of a request for `model` sent at 7.
pub(crate) fn exchange(model: &str, stream: bool, include_usage: bool) -> Exchange {
    Exchange {
        stream,
        include_usage,
        model: model.into(),
        created: 7,
    }
}

/// The head of a client's chat request, with the client's own key.
pub(crate) fn client_request() -> Parts {
    Request::post("/chat/completions")
        .header("authorization", "Bearer client-key")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// The data of each OpenAI event in `stream`, `[DONE]` included.
pub(crate) fn data_events(stream: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(stream).unwrap();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap().to_owned())
        .collect()
}

/// The chunks of `stream` (its events but `[DONE]`), as JSON.
pub(crate) fn chunks(stream: &[u8]) -> Vec<Value> {
    data_events(stream)
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// Asserts that `stream` is the OpenAI stream of a text answer of
/// `pieces`: the role, a chunk a piece, the `stop` finish and `[DONE]`,
/// each chunk under `id` and `model` and none with usage.
pub(crate) fn assert_text_stream(stream: &[u8], pieces: &[&str], id: &str, model: &str) {
    assert_eq!(data_events(stream).last().unwrap(), "[DONE]");
    let chunks = chunks(stream);
    assert_eq!(chunks.len(), pieces.len() + 2);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    for (chunk, piece) in chunks[1..].iter().zip(pieces) {
        assert_eq!(chunk["choices"][0]["delta"], json!({ "content": piece }));
    }
    assert_eq!(
        chunks[pieces.len() + 1]["choices"][0]["finish_reason"],
        "stop"
    );
    for chunk in &chunks {
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], model);
        assert!(chunk.get("usage").is_none());
    }
}
