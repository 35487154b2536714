//! Unit tests of Vertex AI: the service account and its assertion, URLs,
//! the per-family translation, error shapes and streams.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use proptest::prelude::*;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Value, json};
use tollgate_core::ErrorClass;
use tollgate_testkit::{anthropic as claude_fake, vertex as fake};

use super::*;

fn key_file(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "proj-from-key",
        "private_key_id": "kid-1",
        "private_key": fake::TEST_PRIVATE_KEY,
        "client_email": fake::CLIENT_EMAIL,
        "token_uri": token_uri,
    })
    .to_string()
}

fn vertex(config: ProviderConfig) -> Vertex {
    Vertex::new(&config, "my-proj").unwrap()
}

fn prepare(
    vertex: &Vertex,
    body: Value,
) -> Result<(http::request::Parts, Value, Exchange), Failure> {
    let (mut head, ()) = Request::post("/chat/completions")
        .header("authorization", "Bearer client-key")
        .body(())
        .unwrap()
        .into_parts();
    let (out, exchange) = vertex.prepare(&mut head, body.to_string().as_bytes(), 7)?;
    Ok((head, serde_json::from_slice(&out).unwrap(), exchange))
}

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    })
}

#[test]
fn a_service_account_signs_an_assertion_google_accepts() {
    let account = ServiceAccount::from_json(&key_file("https://oauth2.example/token")).unwrap();
    assert_eq!(account.project_id(), Some("proj-from-key"));
    assert_eq!(account.token_uri(), "https://oauth2.example/token");
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let jwt = account.assertion(now).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(
        decode(parts[0]),
        json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"})
    );
    assert_eq!(
        decode(parts[1]),
        json!({
            "iss": fake::CLIENT_EMAIL,
            "scope": SCOPE,
            "aud": "https://oauth2.example/token",
            "iat": 1_700_000_000u64,
            "exp": 1_700_003_600u64,
        })
    );
    // The signature checks with the key's public half.
    let key =
        ring::signature::RsaKeyPair::from_pkcs8(&account::pem_der(fake::TEST_PRIVATE_KEY).unwrap())
            .unwrap();
    let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public().as_ref());
    let signed = format!("{}.{}", parts[0], parts[1]);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    public.verify(signed.as_bytes(), &signature).unwrap();
    // Nothing of the key shows in debug output.
    let debug = format!("{account:?}");
    assert!(debug.contains(fake::CLIENT_EMAIL));
    assert!(!debug.contains("PRIVATE"));
}

#[test]
fn key_files_that_are_not_service_accounts_are_refused_without_echo() {
    let secret_ish = json!({"type": "authorized_user", "refresh_token": "1//secret-refresh"});
    let error = ServiceAccount::from_json(&secret_ish.to_string()).unwrap_err();
    assert!(error.to_string().contains("service_account"));
    assert!(!error.to_string().contains("secret-refresh"));
    let no_email = json!({"type": "service_account", "private_key": fake::TEST_PRIVATE_KEY});
    assert!(ServiceAccount::from_json(&no_email.to_string()).is_err());
    let bad_key = json!({"client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"});
    let error = ServiceAccount::from_json(&bad_key.to_string()).unwrap_err();
    assert!(error.to_string().contains("private_key"));
    let not_pem = json!({"client_email": "a@b", "private_key": "xyz"});
    assert!(ServiceAccount::from_json(&not_pem.to_string()).is_err());
    assert!(ServiceAccount::from_json("not json").is_err());
    let missing = ServiceAccount::load("/nonexistent/tollgate-key.json").unwrap_err();
    assert!(missing.to_string().contains("vertex_credentials"));
}

#[test]
fn a_key_file_is_read_from_its_path_or_its_text() {
    let path = std::env::temp_dir().join(format!("tollgate-vertex-{}.json", std::process::id()));
    std::fs::write(&path, key_file(DEFAULT_TOKEN_URI)).unwrap();
    let from_path = ServiceAccount::load(path.to_str().unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(from_path.token_uri(), DEFAULT_TOKEN_URI);
    let from_text = ServiceAccount::load(&format!("  {}", key_file(DEFAULT_TOKEN_URI))).unwrap();
    assert_eq!(from_text.project_id(), Some("proj-from-key"));
    // No token_uri: Google's.
    let mut file: Value = serde_json::from_str(&key_file("x")).unwrap();
    file.as_object_mut().unwrap().remove("token_uri");
    let default = ServiceAccount::from_json(&file.to_string()).unwrap();
    assert_eq!(default.token_uri(), DEFAULT_TOKEN_URI);
}

#[test]
fn claude_goes_to_raw_predict_with_the_vertex_version_and_no_model() {
    let vertex = vertex(ProviderConfig::new().vertex_location("us-east5"));
    let (head, sent, exchange) =
        prepare(&vertex, chat("claude-3-5-sonnet@20240620", false)).unwrap();
    assert_eq!(
        head.uri,
        "https://us-east5-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-east5/publishers/anthropic/models/claude-3-5-sonnet@20240620:rawPredict"
    );
    assert_eq!(sent["anthropic_version"], "vertex-2023-10-16");
    assert!(sent.get("model").is_none());
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 4096);
    // The client's key is not forwarded; Vertex's token is added below.
    assert!(!head.headers.contains_key("authorization"));
    assert!(!head.headers.contains_key("x-api-key"));
    assert!(!head.headers.contains_key("anthropic-version"));
    assert_eq!(&*exchange.model, "claude-3-5-sonnet@20240620");

    let (head, sent, exchange) =
        prepare(&vertex, chat("claude-3-5-sonnet@20240620", true)).unwrap();
    assert!(head.uri.path().ends_with(":streamRawPredict"));
    assert_eq!(sent["stream"], true);
    assert!(exchange.stream);
}

#[test]
fn claude_counts_tokens_at_count_tokens_and_gemini_does_not() {
    let vertex = vertex(ProviderConfig::new().vertex_location("us-east5"));
    assert!(vertex.counts_tokens("claude-3-5-sonnet@20240620"));
    assert!(!vertex.counts_tokens("gemini-2.0-flash"));
    assert!(!vertex.counts_tokens("llama-3"));
    let (mut head, ()) = Request::post("/v1/messages/count_tokens")
        .header("authorization", "Bearer sk-client-key")
        .body(())
        .unwrap()
        .into_parts();
    vertex.count_tokens(&mut head);
    assert_eq!(
        head.uri,
        "https://us-east5-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict"
    );
    // The client's key is not forwarded; Vertex's token is added below.
    assert!(!head.headers.contains_key("authorization"));
}

#[test]
fn gemini_goes_to_generate_content_without_an_api_key() {
    let vertex = vertex(ProviderConfig::new().api_key("AIza-not-for-vertex"));
    let (head, sent, _) = prepare(&vertex, chat("gemini-2.0-flash", false)).unwrap();
    assert_eq!(
        head.uri,
        "https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent"
    );
    assert!(!head.headers.contains_key("x-goog-api-key"));
    assert!(sent.get("contents").is_some());
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    let (head, _, _) = prepare(&vertex, chat("gemini-2.0-flash", true)).unwrap();
    assert!(head.uri.path().ends_with(":streamGenerateContent"));
    assert_eq!(head.uri.query(), Some("alt=sse"));
}

#[test]
fn global_and_api_base_choose_the_host() {
    let global = vertex(ProviderConfig::new().vertex_location("global"));
    let (head, _, _) = prepare(&global, chat("gemini-2.5-pro", false)).unwrap();
    assert_eq!(head.uri.host(), Some("aiplatform.googleapis.com"));
    assert!(head.uri.path().contains("/locations/global/"));
    let proxied = vertex(ProviderConfig::new().api_base("http://127.0.0.1:9/proxy/"));
    let (head, _, _) = prepare(&proxied, chat("claude-sonnet-4@20250514", false)).unwrap();
    assert_eq!(
        head.uri,
        "http://127.0.0.1:9/proxy/v1/projects/my-proj/locations/us-central1/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict"
    );
}

#[test]
fn names_that_cannot_be_sent_are_refused() {
    assert!(matches!(
        Vertex::new(&ProviderConfig::new(), "proj/../x"),
        Err(InvalidConfig::Invalid(what)) if what == "vertex_project"
    ));
    assert!(matches!(
        Vertex::new(&ProviderConfig::new().vertex_location("us central"), "p"),
        Err(InvalidConfig::Invalid(what)) if what == "vertex_location"
    ));
    assert!(Vertex::new(&ProviderConfig::new().api_base("ftp://x"), "p").is_err());
    let vertex = vertex(ProviderConfig::new());
    let other = prepare(&vertex, chat("llama-3.1-405b", false)).unwrap_err();
    assert_eq!(other.class(), ErrorClass::BadRequest);
    assert!(other.message().contains("Gemini"));
    let traversal = prepare(&vertex, chat("claude-x/../../evil", false)).unwrap_err();
    assert_eq!(traversal.class(), ErrorClass::BadRequest);
    let no_model = prepare(&vertex, json!({"messages": []})).unwrap_err();
    assert_eq!(no_model.class(), ErrorClass::BadRequest);
}

#[test]
fn layer_needs_credentials_and_a_project() {
    let missing = Vertex::layer(&ProviderConfig::new()).unwrap_err();
    assert_eq!(missing, InvalidConfig::Missing("vertex_credentials"));
    // The project comes from the key file unless the config names one.
    let layer =
        Vertex::layer(&ProviderConfig::new().vertex_credentials(key_file("http://t/token")));
    assert!(layer.is_ok());
    let mut file: Value = serde_json::from_str(&key_file("http://t/token")).unwrap();
    file.as_object_mut().unwrap().remove("project_id");
    let no_project = Vertex::layer(&ProviderConfig::new().vertex_credentials(file.to_string()));
    assert_eq!(
        no_project.unwrap_err(),
        InvalidConfig::Missing("vertex_project")
    );
    let named = Vertex::layer(
        &ProviderConfig::new()
            .vertex_credentials(file.to_string())
            .vertex_project("named"),
    )
    .unwrap();
    // Debug output names the account, never the key.
    let debug = format!("{named:?}");
    assert!(debug.contains(fake::CLIENT_EMAIL));
    assert!(!debug.contains("BEGIN"));
    let config_debug = format!(
        "{:?}",
        ProviderConfig::new().vertex_credentials(key_file("http://t/token"))
    );
    assert!(!config_debug.contains("PRIVATE KEY"));
}

fn exchange(model: &str, stream: bool, include_usage: bool) -> Exchange {
    Exchange {
        stream,
        include_usage,
        model: model.into(),
        created: 7,
    }
}

#[test]
fn answers_are_read_by_the_model_family() {
    let vertex = vertex(ProviderConfig::new());
    let claude = exchange("claude-3-5-sonnet@20240620", false, false);
    let body = Bytes::from(claude_fake::message("Hi there").to_string());
    let out: Value = serde_json::from_slice(&vertex.answer(&claude, body).unwrap()).unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(out["usage"]["prompt_tokens"], 3025);

    let gemini = exchange("gemini-2.0-flash", false, false);
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1, "totalTokenCount": 5},
    });
    let out: Value = serde_json::from_slice(
        &vertex
            .answer(&gemini, Bytes::from(body.to_string()))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "Hello");
    assert_eq!(out["usage"]["total_tokens"], 5);

    let unknown = exchange("llama", false, false);
    assert!(vertex.answer(&unknown, Bytes::new()).is_err());
}

#[test]
fn errors_are_read_by_their_shape() {
    let vertex = vertex(ProviderConfig::new());
    let google = json!({"error": {"code": 429, "message": "Resource exhausted. Please try again later.", "status": "RESOURCE_EXHAUSTED"}});
    let failure = vertex.classify(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        google.to_string().as_bytes(),
    );
    assert_eq!(failure.class(), ErrorClass::RateLimited);
    let too_long = claude_fake::error_body(
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
    );
    let failure = vertex.classify(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        too_long.to_string().as_bytes(),
    );
    assert_eq!(failure.class(), ErrorClass::ContextWindowExceeded);
    let overloaded = claude_fake::error_body("overloaded_error", "Overloaded");
    let failure = vertex.classify(
        StatusCode::from_u16(529).unwrap(),
        &HeaderMap::new(),
        overloaded.to_string().as_bytes(),
    );
    assert_eq!(failure.subkind(), Some("overloaded"));
    let failure = vertex.classify(StatusCode::FORBIDDEN, &HeaderMap::new(), b"");
    assert_eq!(failure.class(), ErrorClass::Auth);
}

fn translate(vertex: &Vertex, exchange: &Exchange, chunks: Vec<Bytes>) -> Result<Bytes, Failure> {
    let mut stream = vertex.stream(exchange);
    let mut out = TranslatedEvents::new();
    for chunk in chunks {
        stream.push(chunk, &mut out)?;
    }
    assert!(stream.finished());
    assert!(stream.committed());
    Ok(out.take_all())
}

fn text_of(stream: &[u8]) -> (String, bool) {
    let mut text = String::new();
    let mut done = false;
    for event in std::str::from_utf8(stream).unwrap().split("\n\n") {
        let Some(data) = event.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(part) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(part);
        }
    }
    (text, done)
}

#[test]
fn streams_are_translated_by_the_model_family() {
    let vertex = vertex(ProviderConfig::new());
    let claude = exchange("claude-3-5-sonnet@20240620", true, true);
    let out = translate(
        &vertex,
        &claude,
        vec![Bytes::from(claude_fake::text_stream(&["Hel", "lo"]))],
    )
    .unwrap();
    assert_eq!(text_of(&out), ("Hello".to_owned(), true));

    let gemini = exchange("gemini-2.0-flash", true, false);
    let events = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Wor"}]}}]}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ld"}]}, "finishReason": "STOP"}],
               "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}}),
    ];
    let sse: String = events
        .iter()
        .map(|e| format!("data: {e}\r\n\r\n"))
        .collect();
    let out = translate(&vertex, &gemini, vec![Bytes::from(sse)]).unwrap();
    assert_eq!(text_of(&out), ("World".to_owned(), true));
}

#[test]
fn a_claude_error_event_mid_stream_is_classified() {
    let vertex = vertex(ProviderConfig::new());
    let claude = exchange("claude-3-5-sonnet@20240620", true, false);
    let mut stream = vertex.stream(&claude);
    let mut out = TranslatedEvents::new();
    let events = claude_fake::start() + &claude_fake::error_event("overloaded_error", "Overloaded");
    let failure = stream.push(Bytes::from(events), &mut out).unwrap_err();
    assert_eq!(failure.subkind(), Some("overloaded"));
    assert!(!stream.committed());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A Claude-on-Vertex stream cut anywhere translates to the same text.
    #[test]
    fn any_byte_split_of_a_claude_stream_gives_the_same_text(
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10)
    ) {
        let vertex = vertex(ProviderConfig::new());
        let claude = exchange("claude-3-5-sonnet@20240620", true, true);
        let stream = Bytes::from(claude_fake::text_stream(&["Hé", "llo, ", "wörld"]));
        let whole = translate(&vertex, &claude, vec![stream.clone()]).unwrap();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in at {
            chunks.push(stream.slice(from..cut));
            from = cut;
        }
        chunks.push(stream.slice(from..));
        let split = translate(&vertex, &claude, chunks).unwrap();
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(text_of(&split).0, "Héllo, wörld");
    }
}

#[test]
fn the_auth_layer_shows_the_account_never_the_key() {
    let account = ServiceAccount::from_json(&key_file(DEFAULT_TOKEN_URI)).unwrap();
    let layer = GoogleAuthLayer::new(account);
    let service = layer.layer("inner");
    assert_eq!(*service.get_ref(), "inner");
    for shown in [format!("{layer:?}"), format!("{service:?}")] {
        assert!(shown.contains(fake::CLIENT_EMAIL), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}
