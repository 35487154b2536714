//! `/v1/embeddings` through the native translations (issue 15 item 1):
//! `gemini/` (`embedContent`, `batchEmbedContents`), `vertex_ai/`
//! (`:predict`) and `bedrock/` (InvokeModel on Titan and Cohere)
//! deployments of a LiteLLM config, against the testkit's fakes on
//! loopback sockets — the Bedrock one checks every SigV4 signature, the
//! Vertex one every token and route. Answers in OpenAI's shape, float and
//! base64, exact costs from LiteLLM's prices, ledger rows, and a 503
//! answered by a fallback group.

mod common;

use common::{Answer, TestClient, TestGateway, call, client};
use serde_json::{Value, json};
use tollgate_testkit::vertex::{self as fake_vertex, Vertex};
use tollgate_testkit::{Reply, Upstream, bedrock, gemini};

const GEMINI_KEY: &str = "AIzaSyD-native-embeddings-test-key-0123";

struct Setup {
    gemini: Upstream,
    vertex: Vertex,
    bedrock: Upstream,
    gateway: TestGateway,
    client: TestClient,
    _dir: std::path::PathBuf,
}

/// Every embeddings group, each on its fake; `gemini-embed` falls back to
/// `titan`. No retries, no breakers: each attempt is what a test pushed.
async fn setup(name: &str) -> Setup {
    let gemini = Upstream::start().await;
    let vertex = Vertex::start().await;
    let bedrock = bedrock::upstream().await;
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let vertex_deployment = |group: &str, model: &str| {
        format!(
            "  - model_name: {group}
    litellm_params:
      model: vertex_ai/{model}
      api_base: {url}
      vertex_project: {project}
      vertex_location: us-central1
      vertex_credentials: os.environ/VERTEX_KEY_JSON
",
            url = vertex.url(),
            project = fake_vertex::PROJECT,
        )
    };
    let bedrock_deployment = |group: &str, model: &str| {
        format!(
            "  - model_name: {group}
    litellm_params:
      model: bedrock/{model}
      aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID
      aws_secret_access_key: os.environ/AWS_SECRET_ACCESS_KEY
      aws_region_name: {region}
      aws_bedrock_runtime_endpoint: {url}
",
            region = bedrock::REGION,
            url = bedrock.url(),
        )
    };
    let yaml = format!(
        "model_list:
  - model_name: gemini-embed
    litellm_params:
      model: gemini/gemini-embedding-001
      api_base: {gemini_url}
      api_key: os.environ/GEMINI_API_KEY
{vertex_text}{vertex_gemini}{titan}{cohere}router_settings:
  num_retries: 0
  cooldown_time: 0
  fallbacks:
    - gemini-embed: [\"titan\"]
tollgate:
  ledger_path: {ledger}
",
        gemini_url = gemini.url(),
        vertex_text = vertex_deployment("vertex-embed", "text-embedding-005"),
        vertex_gemini = vertex_deployment("vertex-gemini-embed", "gemini-embedding-001"),
        titan = bedrock_deployment("titan", "amazon.titan-embed-text-v2:0"),
        cohere = bedrock_deployment("cohere", "cohere.embed-english-v3"),
        ledger = dir.join("ledger.sqlite3").display(),
    );
    let key = vertex.service_account_json();
    let gateway = TestGateway::start(
        &yaml,
        &[
            ("GEMINI_API_KEY", GEMINI_KEY),
            ("VERTEX_KEY_JSON", key.as_str()),
            ("AWS_ACCESS_KEY_ID", bedrock::ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", bedrock::SECRET_ACCESS_KEY),
        ],
    )
    .await;
    Setup {
        gemini,
        vertex,
        bedrock,
        gateway,
        client: client(),
        _dir: dir,
    }
}

impl Setup {
    async fn embed(&self, body: Value) -> Answer {
        call(
            &self.client,
            "POST",
            &self.gateway.url("/v1/embeddings"),
            body.to_string(),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// The ledger's rows for the model group `model`.
    async fn spend_rows(&self, model: &str) -> Vec<Value> {
        self.gateway.gateway.flush_spend().await;
        let logs = call(
            &self.client,
            "GET",
            &self
                .gateway
                .url(&format!("/spend/logs?model={model}&limit=100")),
            "",
            &[],
        )
        .await;
        assert_eq!(logs.status, 200, "{}", logs.text());
        logs.json()["data"].as_array().unwrap().clone()
    }
}

fn cost(answer: &Answer) -> &str {
    answer.headers["x-tollgate-response-cost"].to_str().unwrap()
}

/// The vectors of an OpenAI embeddings answer, each checked for its index.
fn vectors(answer: &Answer) -> Vec<Value> {
    let body = answer.json();
    assert_eq!(body["object"], "list", "{body}");
    let data = body["data"].as_array().unwrap();
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], index);
    }
    data.iter().map(|item| item["embedding"].clone()).collect()
}

/// `values` as OpenAI's base64: little-endian `f32`s.
fn base64_of(values: &[f32]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn gemini_embeds_one_text_and_a_list_with_an_estimated_count_priced_exactly() {
    let s = setup("embed-gemini").await;
    s.gemini
        .push(Reply::json(200, gemini::embedding(&[0.25, -0.5])));
    let answer = s
        .embed(json!({"model": "gemini-embed", "input": "Hello world", "dimensions": 2}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(vectors(&answer), [json!([0.25, -0.5])]);
    // Gemini counts no tokens: 11 characters are 3 (a token per 4,
    // rounded up), at LiteLLM's 1.5e-07 for gemini/gemini-embedding-001.
    assert_eq!(
        answer.json()["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    assert_eq!(cost(&answer), "0.00000045");
    assert_eq!(answer.headers["x-tollgate-deployment"], "gemini-embed/0");
    let sent = &s.gemini.requests()[0];
    assert_eq!(
        sent.uri.path(),
        "/v1beta/models/gemini-embedding-001:embedContent"
    );
    assert_eq!(sent.headers["x-goog-api-key"], GEMINI_KEY);
    assert_eq!(
        sent.json(),
        json!({"content": {"parts": [{"text": "Hello world"}]}, "outputDimensionality": 2})
    );

    s.gemini.push(Reply::json(
        200,
        gemini::batch_embeddings(&[&[1.0, 2.0], &[0.5, -2.5]]),
    ));
    let answer = s
        .embed(
            json!({"model": "gemini-embed", "input": ["Hello world", "Bonjour"],
                      "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        vectors(&answer),
        [
            json!(base64_of(&[1.0, 2.0])),
            json!(base64_of(&[0.5, -2.5]))
        ]
    );
    // 3 + 2 tokens.
    assert_eq!(cost(&answer), "0.00000075");
    let sent = &s.gemini.requests()[1];
    assert_eq!(
        sent.uri.path(),
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(
        sent.json()["requests"][1],
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "Bonjour"}]}})
    );

    let rows = s.spend_rows("gemini-embed").await;
    let mut spent: Vec<&str> = rows.iter().map(|r| r["spend"].as_str().unwrap()).collect();
    spent.sort_unstable();
    assert_eq!(spent, ["0.00000045", "0.00000075"], "{rows:?}");
    // Gemini counted nothing: the ledger says the counts are estimates.
    assert!(
        rows.iter().all(|r| r["usage_estimated"] == true),
        "{rows:?}"
    );
}

#[tokio::test]
async fn vertex_embeds_through_predict_with_its_token_counts() {
    let s = setup("embed-vertex").await;
    s.vertex.upstream().push(Reply::json(
        200,
        fake_vertex::predictions(&[(&[0.1, 0.2], 6), (&[0.3, 0.4], 4)]),
    ));
    let answer = s
        .embed(json!({"model": "vertex-embed", "input": ["first", "second"], "dimensions": 2}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(vectors(&answer), [json!([0.1, 0.2]), json!([0.3, 0.4])]);
    assert_eq!(answer.json()["usage"]["prompt_tokens"], 10);
    // LiteLLM's 1e-07 for text-embedding-005: 10 tokens.
    assert_eq!(cost(&answer), "0.000001");
    let sent = &s.vertex.upstream().requests()[0];
    assert_eq!(
        sent.uri.path(),
        fake_vertex::model_path("us-central1", "google", "text-embedding-005", "predict")
    );
    assert!(
        sent.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    assert_eq!(
        sent.json(),
        json!({"instances": [{"content": "first"}, {"content": "second"}],
               "parameters": {"outputDimensionality": 2}})
    );

    // gemini-embedding-001 on Vertex takes one text a call.
    for (values, tokens) in [(&[1.0][..], 2), (&[2.0][..], 3)] {
        s.vertex.upstream().push(Reply::json(
            200,
            fake_vertex::predictions(&[(values, tokens)]),
        ));
    }
    let answer = s
        .embed(json!({"model": "vertex-gemini-embed", "input": ["a", "b"],
                      "encoding_format": "base64"}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        vectors(&answer),
        [json!(base64_of(&[1.0])), json!(base64_of(&[2.0]))]
    );
    // 5 tokens at LiteLLM's 1.5e-07 for gemini-embedding-001.
    assert_eq!(cost(&answer), "0.00000075");
    let sent = s.vertex.upstream().requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].json()["instances"], json!([{"content": "b"}]));
    assert!(
        s.vertex.assertions().len() <= 1,
        "one token for the account"
    );
}

#[tokio::test]
async fn bedrock_embeds_with_titan_a_text_a_call_and_with_cohere_in_one() {
    let s = setup("embed-bedrock").await;
    s.bedrock
        .push(Reply::json(200, bedrock::titan_embedding(&[0.5, 0.25], 3)));
    s.bedrock
        .push(Reply::json(200, bedrock::titan_embedding(&[-1.0, 2.0], 5)));
    let answer = s
        .embed(json!({"model": "titan", "input": ["one", "three"], "dimensions": 256}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(vectors(&answer), [json!([0.5, 0.25]), json!([-1.0, 2.0])]);
    // 8 tokens at LiteLLM's 2e-08 for amazon.titan-embed-text-v2:0.
    assert_eq!(cost(&answer), "0.00000016");
    let sent = s.bedrock.requests();
    assert_eq!(sent.len(), 2, "every request signed and accepted");
    assert_eq!(
        sent[0].uri.path(),
        "/model/amazon.titan-embed-text-v2%3A0/invoke"
    );
    assert_eq!(
        sent[1].json(),
        json!({"inputText": "three", "dimensions": 256})
    );

    s.bedrock
        .push(bedrock::cohere_embeddings(&[&[0.1], &[0.2], &[0.3]], 12));
    let answer = s
        .embed(json!({"model": "cohere", "input": ["a", "b", "c"], "encoding_format": "base64"}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        vectors(&answer),
        [0.1, 0.2, 0.3].map(|v| json!(base64_of(&[v])))
    );
    // 12 tokens (from X-Amzn-Bedrock-Input-Token-Count) at 1e-07.
    assert_eq!(answer.json()["usage"]["prompt_tokens"], 12);
    assert_eq!(cost(&answer), "0.0000012");
    let sent = &s.bedrock.requests()[2];
    assert_eq!(
        sent.json(),
        json!({"texts": ["a", "b", "c"], "input_type": "search_document"})
    );
    let rows = s.spend_rows("cohere").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["spend"], "0.0000012");
    assert_eq!(rows[0]["prompt_tokens"], 12);
}

#[tokio::test]
async fn a_503_from_gemini_is_answered_by_the_fallback_and_bad_input_is_refused() {
    let s = setup("embed-fallback").await;
    s.gemini.push(Reply::json(503, gemini::overloaded_error()));
    s.bedrock
        .push(Reply::json(200, bedrock::titan_embedding(&[0.5], 4)));
    let answer = s
        .embed(json!({"model": "gemini-embed", "input": "hello"}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(vectors(&answer), [json!([0.5])]);
    assert_eq!(answer.headers["x-tollgate-model-group"], "titan");
    assert_eq!(answer.headers["x-tollgate-attempted-fallbacks"], "1");
    // Only the answer is billed: 4 tokens at 2e-08.
    assert_eq!(cost(&answer), "0.00000008");
    assert_eq!(s.gemini.requests().len(), 1);

    // Token ids: every one of these providers embeds text.
    for model in ["gemini-embed", "vertex-embed", "titan"] {
        let answer = s.embed(json!({"model": model, "input": [[1, 2, 3]]})).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        let error = answer.openai_error();
        assert!(
            error["message"].as_str().unwrap().contains("not token ids"),
            "{error}"
        );
        assert_eq!(error["param"], "input");
    }
    // A model Bedrock has no embeddings for here, and the process stays up.
    let answer = s
        .embed(json!({"model": "titan", "input": "x", "encoding_format": "int8"}))
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    s.bedrock
        .push(Reply::json(200, bedrock::titan_embedding(&[1.0], 1)));
    let answer = s.embed(json!({"model": "titan", "input": "x"})).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(s.bedrock.requests().len(), 2, "refused requests never left");
}
