//! Unit tests of the embeddings translations (Gemini, Vertex AI, Bedrock)
//! and of the service that drives them. JSON only: an embeddings answer is
//! never a stream.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Failure};
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::config::ProviderConfig;
use crate::layer::ProviderLayer;

/// 2024-05-01T09:30:00Z.
const NOW: u64 = 1_714_555_800;

fn client_head() -> Parts {
    Request::post("/embeddings")
        .header("authorization", "Bearer client-key")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn read<E: Embed>(protocol: &E, body: Value) -> Result<EmbeddingRequest, Failure> {
    protocol.read_embeddings(body.to_string().as_bytes())
}

fn calls<E: Embed>(protocol: &E, body: Value) -> Vec<EmbedCall> {
    let request = read(protocol, body).unwrap();
    protocol.embed_calls(&client_head(), &request, NOW).unwrap()
}

fn json_of(call: &EmbedCall) -> Value {
    serde_json::from_slice(&call.body).unwrap()
}

fn answer_of(request: &EmbeddingRequest, embedded: &[Embedded]) -> Value {
    serde_json::from_slice(&answer::openai_answer(request, embedded).unwrap()).unwrap()
}

/// The `param` a failure names, as the client reads it.
fn param(failure: &Failure) -> Option<String> {
    let body: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
    body["error"]["param"].as_str().map(str::to_owned)
}

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

// ---- The OpenAI request and answer ----

#[cfg(feature = "gemini")]
mod openai_shape {
    use super::*;
    use crate::gemini::Gemini;

    fn gemini() -> Gemini {
        Gemini::new(&ProviderConfig::new().api_key("AIza-test")).unwrap()
    }

    #[test]
    fn inputs_are_a_string_or_strings_and_token_ids_are_refused_clearly() {
        let one = read(
            &gemini(),
            json!({"model": "gemini/text-embedding-004", "input": "hi"}),
        );
        let one = one.unwrap();
        assert_eq!(one.model(), "text-embedding-004");
        assert_eq!(one.inputs(), ["hi"]);
        assert!(!one.base64());
        let many = read(
            &gemini(),
            json!({"model": "m", "input": ["a", "b"], "dimensions": 256, "encoding_format": "base64"}),
        )
        .unwrap();
        assert_eq!(many.inputs(), ["a", "b"]);
        assert_eq!(many.dimensions(), Some(256));
        assert!(many.base64());

        for (input, says) in [
            (json!([1, 2, 3]), "Gemini embeds text"),
            (json!([[1, 2], [3]]), "not token ids"),
            (json!([]), "must not be empty"),
            (json!({"text": "a"}), "a string or a list of strings"),
            (json!(null), "a string or a list of strings"),
        ] {
            let failure = read(&gemini(), json!({"model": "m", "input": input})).unwrap_err();
            assert_eq!(failure.class(), ErrorClass::BadRequest);
            assert_eq!(param(&failure), Some("input".into()));
            assert!(failure.message().contains(says), "{}", failure.message());
        }
        let format = read(
            &gemini(),
            json!({"model": "m", "input": "a", "encoding_format": "int8"}),
        );
        assert_eq!(param(&format.unwrap_err()), Some("encoding_format".into()));
        let dimensions = read(
            &gemini(),
            json!({"model": "m", "input": "a", "dimensions": -3}),
        );
        assert_eq!(param(&dimensions.unwrap_err()), Some("dimensions".into()));
        assert_eq!(
            gemini().read_embeddings(b"not json").unwrap_err().class(),
            ErrorClass::BadRequest
        );
    }

    #[test]
    fn the_answer_is_openais_list_with_numbers_as_written_or_base64_of_f32s() {
        let request = read(&gemini(), json!({"model": "m", "input": ["a", "b", "c"]})).unwrap();
        let embedded = [
            Embedded {
                estimated: false,
                vectors: vec![raw("[0.0123456789012345678, -1e-7]"), raw("[1]")],
                prompt_tokens: 5,
            },
            Embedded {
                estimated: false,
                vectors: vec![raw("[2.5]")],
                prompt_tokens: 3,
            },
        ];
        let text = answer::openai_answer(&request, &embedded).unwrap();
        // The provider's digits are kept, not rounded through a float.
        assert!(
            std::str::from_utf8(&text)
                .unwrap()
                .contains("[0.0123456789012345678, -1e-7]")
        );
        let answer: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(answer["object"], "list");
        assert_eq!(answer["model"], "m");
        assert_eq!(
            answer["usage"],
            json!({"prompt_tokens": 8, "total_tokens": 8})
        );
        let data = answer["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        for (index, item) in data.iter().enumerate() {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], index);
        }
        assert_eq!(data[2]["embedding"], json!([2.5]));

        let request = read(
            &gemini(),
            json!({"model": "m", "input": "a", "encoding_format": "base64"}),
        )
        .unwrap();
        let embedded = [Embedded {
            estimated: false,
            vectors: vec![raw("[1.0, -2.5]")],
            prompt_tokens: 1,
        }];
        // 1.0f32 is 00 00 80 3f and -2.5f32 00 00 20 c0, little-endian.
        assert_eq!(
            answer_of(&request, &embedded)["data"][0]["embedding"],
            "AACAPwAAIMA="
        );
        let embedded = [Embedded {
            estimated: false,
            vectors: vec![raw(r#"["x"]"#)],
            prompt_tokens: 1,
        }];
        let failure = answer::openai_answer(&request, &embedded).unwrap_err();
        assert_eq!(failure.subkind(), Some("malformed_response"));
    }

    #[test]
    fn gemini_embeds_one_text_with_embed_content_and_a_list_in_batches() {
        let protocol = gemini();
        let one = calls(
            &protocol,
            json!({"model": "gemini/gemini-embedding-001", "input": "Hello", "dimensions": 768,
                   "task_type": "RETRIEVAL_QUERY"}),
        );
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].head.uri,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:embedContent"
        );
        assert_eq!(one[0].head.headers["x-goog-api-key"], "AIza-test");
        assert!(one[0].head.headers.get("authorization").is_none());
        assert_eq!(
            json_of(&one[0]),
            json!({"content": {"parts": [{"text": "Hello"}]}, "outputDimensionality": 768,
                   "taskType": "RETRIEVAL_QUERY"})
        );

        let texts: Vec<String> = (0..150).map(|i| format!("text {i}")).collect();
        let batched = calls(
            &protocol,
            json!({"model": "text-embedding-004", "input": texts}),
        );
        assert_eq!(batched.len(), 2, "at most 100 requests a batch");
        assert_eq!(batched[0].inputs, 0..100);
        assert_eq!(batched[1].inputs, 100..150);
        assert!(
            batched[1]
                .head
                .uri
                .path()
                .ends_with("/models/text-embedding-004:batchEmbedContents")
        );
        let body = json_of(&batched[1]);
        assert_eq!(body["requests"].as_array().unwrap().len(), 50);
        assert_eq!(
            body["requests"][0],
            json!({"model": "models/text-embedding-004",
                   "content": {"parts": [{"text": "text 100"}]}})
        );

        let refused = read(&protocol, json!({"model": "../x", "input": "a"})).unwrap();
        let failure = protocol
            .embed_calls(&client_head(), &refused, NOW)
            .unwrap_err();
        assert_eq!(param(&failure), Some("model".into()));
    }

    #[test]
    fn gemini_answers_are_read_with_their_count_or_an_estimate_of_four_characters_a_token() {
        let protocol = gemini();
        let request = read(&protocol, json!({"model": "m", "input": ["abcde", "éé"]})).unwrap();
        let batch = br#"{"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}"#;
        let embedded = protocol
            .embedded(&request, 0..2, &HeaderMap::new(), batch)
            .unwrap();
        assert_eq!(embedded.vectors.len(), 2);
        assert_eq!(embedded.vectors[1].get(), "[0.3, 0.4]");
        // 5 characters → 2 tokens, 2 characters (4 bytes) → 1.
        assert_eq!(embedded.prompt_tokens, 3);
        assert!(embedded.estimated, "no count from Gemini: estimated");

        let counted =
            br#"{"embedding": {"values": [0.5]}, "usageMetadata": {"promptTokenCount": 11}}"#;
        let embedded = protocol
            .embedded(&request, 0..1, &HeaderMap::new(), counted)
            .unwrap();
        assert_eq!(embedded.prompt_tokens, 11);
        assert!(!embedded.estimated);

        for broken in [&b"{}"[..], b"[]", br#"{"embedding": {"values": 3}}"#] {
            let failure = protocol
                .embedded(&request, 0..1, &HeaderMap::new(), broken)
                .unwrap_err();
            assert_eq!(failure.subkind(), Some("malformed_response"));
        }
    }
}

#[cfg(feature = "vertex")]
mod vertex {
    use super::*;
    use crate::vertex::Vertex;

    fn vertex() -> Vertex {
        Vertex::new(
            &ProviderConfig::new().vertex_location("europe-west4"),
            "my-proj",
        )
        .unwrap()
    }

    #[test]
    fn text_embedding_models_take_instances_in_one_predict_call() {
        let made = calls(
            &vertex(),
            json!({"model": "vertex_ai/text-embedding-005", "input": ["a", "b"], "dimensions": 256,
                   "task_type": "RETRIEVAL_DOCUMENT"}),
        );
        assert_eq!(made.len(), 1);
        assert_eq!(
            made[0].head.uri,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-proj/locations/\
             europe-west4/publishers/google/models/text-embedding-005:predict"
        );
        // The credentials come from the auth layer below, never the client.
        assert!(made[0].head.headers.get("authorization").is_none());
        assert!(made[0].head.headers.get("x-goog-api-key").is_none());
        assert_eq!(
            json_of(&made[0]),
            json!({"instances": [{"content": "a", "task_type": "RETRIEVAL_DOCUMENT"},
                                 {"content": "b", "task_type": "RETRIEVAL_DOCUMENT"}],
                   "parameters": {"outputDimensionality": 256}})
        );
    }

    #[test]
    fn gemini_embedding_models_take_one_instance_a_call() {
        let made = calls(
            &vertex(),
            json!({"model": "gemini-embedding-001", "input": ["a", "b", "c"]}),
        );
        assert_eq!(made.len(), 3);
        for (n, call) in made.iter().enumerate() {
            assert_eq!(call.inputs, n..n + 1);
            assert_eq!(json_of(call)["instances"].as_array().unwrap().len(), 1);
        }
    }

    #[test]
    fn predictions_are_read_with_their_token_counts_summed() {
        let request = read(
            &vertex(),
            json!({"model": "text-embedding-005", "input": ["a", "b"]}),
        );
        let body = br#"{"predictions": [
            {"embeddings": {"statistics": {"truncated": false, "token_count": 6}, "values": [0.1]}},
            {"embeddings": {"statistics": {"truncated": false, "token_count": 4.0}, "values": [0.2]}}
        ], "metadata": {"billableCharacterCount": 2}}"#;
        let embedded = vertex()
            .embedded(&request.unwrap(), 0..2, &HeaderMap::new(), body)
            .unwrap();
        assert_eq!(embedded.vectors[1].get(), "[0.2]");
        assert_eq!(embedded.prompt_tokens, 10);
    }
}

#[cfg(feature = "bedrock")]
mod bedrock {
    use tollgate_testkit::bedrock as fake;

    use super::*;
    use crate::bedrock::{Bedrock, INPUT_TOKEN_COUNT_HEADER};

    fn bedrock() -> Bedrock {
        Bedrock::new(
            &ProviderConfig::new()
                .aws_credentials(fake::ACCESS_KEY_ID, fake::SECRET_ACCESS_KEY)
                .aws_region(fake::REGION),
        )
        .unwrap()
    }

    /// Each call leaves with a signature AWS would accept.
    fn assert_signed(call: &EmbedCall) {
        let expected = fake::Expected {
            access_key_id: fake::ACCESS_KEY_ID,
            secret_access_key: fake::SECRET_ACCESS_KEY,
            region: fake::REGION,
            service: "bedrock",
        };
        let mut headers = call.head.headers.clone();
        let host = call.head.uri.authority().unwrap().as_str();
        headers.insert("host", HeaderValue::from_str(host).unwrap());
        fake::verify_sigv4(
            &call.head.method,
            &call.head.uri,
            &headers,
            &call.body,
            &expected,
        )
        .unwrap();
        assert!(call.head.headers.get("x-goog-api-key").is_none());
    }

    #[test]
    fn titan_takes_one_text_a_signed_invoke_call() {
        let made = calls(
            &bedrock(),
            json!({"model": "bedrock/amazon.titan-embed-text-v2:0", "input": ["a", "b"],
                   "dimensions": 256, "normalize": true}),
        );
        assert_eq!(made.len(), 2);
        for (n, call) in made.iter().enumerate() {
            assert_signed(call);
            assert_eq!(
                call.head.uri.path(),
                "/model/amazon.titan-embed-text-v2%3A0/invoke"
            );
            assert_eq!(call.inputs, n..n + 1);
        }
        assert_eq!(
            json_of(&made[1]),
            json!({"inputText": "b", "dimensions": 256, "normalize": true})
        );
        // v1 has one size and no normalisation.
        let v1 = read(
            &bedrock(),
            json!({"model": "amazon.titan-embed-text-v1", "input": "a", "dimensions": 256}),
        )
        .unwrap();
        let failure = bedrock().embed_calls(&client_head(), &v1, NOW).unwrap_err();
        assert_eq!(param(&failure), Some("dimensions".into()));
        assert!(failure.message().contains("v2 only"));
    }

    #[test]
    fn cohere_takes_texts_in_batches_with_an_input_type() {
        let texts: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let made = calls(
            &bedrock(),
            json!({"model": "cohere.embed-english-v3", "input": texts}),
        );
        assert_eq!(made.len(), 2, "at most 96 texts a call");
        assert_signed(&made[0]);
        let body = json_of(&made[1]);
        assert_eq!(body["texts"], json!(["96", "97", "98", "99"]));
        assert_eq!(body["input_type"], "search_document");
        let query = calls(
            &bedrock(),
            json!({"model": "cohere.embed-multilingual-v3", "input": "q",
                   "input_type": "search_query", "truncate": "END"}),
        );
        assert_eq!(
            json_of(&query[0]),
            json!({"texts": ["q"], "input_type": "search_query", "truncate": "END"})
        );
        for (model, at) in [
            ("cohere.embed-english-v3", "dimensions"),
            ("amazon.nova-pro-v1:0", "model"),
        ] {
            let request = read(
                &bedrock(),
                json!({"model": model, "input": "a", "dimensions": 8}),
            )
            .unwrap();
            let failure = bedrock()
                .embed_calls(&client_head(), &request, NOW)
                .unwrap_err();
            assert_eq!(failure.class(), ErrorClass::BadRequest);
            assert_eq!(param(&failure).as_deref(), Some(at));
        }
    }

    #[test]
    fn answers_are_read_with_the_count_from_the_body_or_the_header() {
        let titan = read(
            &bedrock(),
            json!({"model": "amazon.titan-embed-text-v2:0", "input": "a"}),
        );
        let body = br#"{"embedding": [0.1, -0.2], "embeddingsByType": {"float": [0.1, -0.2]},
                        "inputTextTokenCount": 7}"#;
        let embedded = bedrock()
            .embedded(&titan.unwrap(), 0..1, &HeaderMap::new(), body)
            .unwrap();
        assert_eq!(embedded.vectors[0].get(), "[0.1, -0.2]");
        assert_eq!(embedded.prompt_tokens, 7);

        let cohere = read(
            &bedrock(),
            json!({"model": "cohere.embed-english-v3", "input": ["a", "b"]}),
        );
        let mut headers = HeaderMap::new();
        headers.insert(INPUT_TOKEN_COUNT_HEADER, HeaderValue::from_static("12"));
        let body =
            br#"{"embeddings": [[0.1], [0.2]], "id": "x", "response_type": "embeddings_floats",
                        "texts": ["a", "b"]}"#;
        let embedded = bedrock()
            .embedded(&cohere.unwrap(), 0..2, &headers, body)
            .unwrap();
        assert_eq!(embedded.vectors.len(), 2);
        assert_eq!(embedded.prompt_tokens, 12);
    }

    /// The fake Bedrock of the service tests: records each call's body and
    /// answers with `reply(n, body)`.
    fn titan_fake(
        seen: Arc<Mutex<Vec<Value>>>,
        reply: fn(usize, &Value) -> (u16, HeaderMap, String),
    ) -> impl tower::Service<
        Request<Bytes>,
        Response = Response<Full<Bytes>>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        service_fn(move |request: Request<Bytes>| {
            let seen = seen.clone();
            async move {
                let body: Value = serde_json::from_slice(request.body()).unwrap();
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(body.clone());
                    seen.len() - 1
                };
                let (status, headers, text) = reply(n, &body);
                let mut response = Response::new(Full::new(Bytes::from(text)));
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                *response.headers_mut() = headers;
                Ok(response)
            }
        })
    }

    async fn embed(
        seen: &Arc<Mutex<Vec<Value>>>,
        reply: fn(usize, &Value) -> (u16, HeaderMap, String),
        body: Value,
    ) -> Result<Value, Failure> {
        let service = ProviderLayer::new(bedrock())
            .with_clock(|| std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW))
            .layer(titan_fake(seen.clone(), reply))
            .embeddings();
        let request = Request::post("/embeddings")
            .body(Bytes::from(body.to_string()))
            .unwrap();
        match service.oneshot(request).await {
            Ok(response) => {
                assert_eq!(response.headers()["content-type"], "application/json");
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                Ok(serde_json::from_slice(&bytes).unwrap())
            }
            Err(error) => Err(Failure::from_error(&*error)),
        }
    }

    fn titan_answer(_: usize, body: &Value) -> (u16, HeaderMap, String) {
        let text = body["inputText"].as_str().unwrap();
        let answer = json!({"embedding": [text.len() as f64, 0.5],
                            "inputTextTokenCount": text.len()});
        (200, HeaderMap::new(), answer.to_string())
    }

    #[tokio::test]
    async fn a_list_for_titan_is_one_call_a_text_and_one_answer_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = embed(
            &seen,
            titan_answer,
            json!({"model": "amazon.titan-embed-text-v2:0", "input": ["a", "bbb", "cc"]}),
        )
        .await
        .unwrap();
        let sent: Vec<Value> = seen.lock().unwrap().clone();
        assert_eq!(
            sent,
            [
                json!({"inputText": "a"}),
                json!({"inputText": "bbb"}),
                json!({"inputText": "cc"})
            ]
        );
        assert_eq!(answer["model"], "amazon.titan-embed-text-v2:0");
        assert_eq!(answer["data"][1]["index"], 1);
        assert_eq!(answer["data"][1]["embedding"], json!([3.0, 0.5]));
        assert_eq!(answer["data"][2]["embedding"], json!([2.0, 0.5]));
        assert_eq!(
            answer["usage"],
            json!({"prompt_tokens": 6, "total_tokens": 6})
        );

        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = embed(
            &seen,
            titan_answer,
            json!({"model": "amazon.titan-embed-text-v2:0", "input": "a",
                   "encoding_format": "base64"}),
        )
        .await
        .unwrap();
        // [1.0, 0.5] as f32s: 00 00 80 3f, 00 00 00 3f.
        assert_eq!(answer["data"][0]["embedding"], "AACAPwAAAD8=");
    }

    #[tokio::test]
    async fn a_failed_call_is_classified_and_the_calls_after_it_are_not_made() {
        fn throttled(n: usize, body: &Value) -> (u16, HeaderMap, String) {
            if n == 0 {
                return titan_answer(n, body);
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-amzn-errortype",
                HeaderValue::from_static("ThrottlingException:http://internal.amazon.com/"),
            );
            (
                429,
                headers,
                json!({"message": "Too many requests"}).to_string(),
            )
        }
        fn unavailable(_: usize, _: &Value) -> (u16, HeaderMap, String) {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-amzn-errortype",
                HeaderValue::from_static("ServiceUnavailableException"),
            );
            (503, headers, json!({"message": "unavailable"}).to_string())
        }
        fn unreadable(_: usize, _: &Value) -> (u16, HeaderMap, String) {
            (
                200,
                HeaderMap::new(),
                json!({"embedding": "no"}).to_string(),
            )
        }
        let request = json!({"model": "amazon.titan-embed-text-v2:0", "input": ["a", "b", "c"]});
        for (reply, class, calls) in [
            (throttled as fn(_, &_) -> _, ErrorClass::RateLimited, 2),
            (unavailable, ErrorClass::UpstreamUnavailable, 1),
            (unreadable, ErrorClass::UpstreamUnavailable, 1),
        ] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let failure = embed(&seen, reply, request.clone()).await.unwrap_err();
            assert_eq!(failure.class(), class, "{}", failure.message());
            assert_eq!(seen.lock().unwrap().len(), calls);
        }
        // A request refused before any call is a bad request.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failure = embed(
            &seen,
            titan_answer,
            json!({"model": "amazon.titan-embed-text-v2:0",
                                                        "input": [[1, 2]]}),
        )
        .await
        .unwrap_err();
        assert_eq!(failure.class(), ErrorClass::BadRequest);
        assert!(seen.lock().unwrap().is_empty());
    }
}
