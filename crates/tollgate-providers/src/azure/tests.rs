//! Unit tests of the Azure protocol: URL, credentials, content filter.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use tollgate_core::ErrorClass;
use tollgate_testkit::{azure as fake, openai};

use super::*;
use crate::stream::translate_all;

fn azure(config: ProviderConfig) -> Azure {
    Azure::new(&config.api_base("https://res.openai.azure.com/")).unwrap()
}

fn prepare(azure: &Azure, body: &Value) -> (Parts, Bytes, Exchange) {
    let (mut head, ()) = Request::post("/chat/completions")
        .header("authorization", "Bearer client")
        .body(())
        .unwrap()
        .into_parts();
    let bytes = body.to_string();
    let (out, exchange) = azure.prepare(&mut head, bytes.as_bytes(), 0).unwrap();
    (head, out, exchange)
}

#[test]
fn requests_go_to_the_deployment_with_the_api_version_and_key() {
    let azure = azure(
        ProviderConfig::new()
            .api_key("azure-key-0123456789")
            .api_version("2024-10-21"),
    );
    let body = json!({"model": "azure/gpt-4o-prod", "stream": true, "messages": []});
    let (head, out, exchange) = prepare(&azure, &body);
    assert_eq!(
        head.uri,
        "https://res.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(head.headers["api-key"], "azure-key-0123456789");
    assert!(head.headers["api-key"].is_sensitive());
    assert!(!head.headers.contains_key("authorization"));
    assert_eq!(head.headers["accept"], "text/event-stream");
    assert_eq!(out, body.to_string());
    assert!(exchange.stream);

    let azure = azure_with_token();
    let (head, _, _) = prepare(&azure, &json!({"model": "ignored", "messages": []}));
    assert_eq!(
        head.headers["authorization"],
        "Bearer entra-token-0123456789"
    );
    assert!(head.uri.to_string().contains("/deployments/fixed/"));
    assert!(
        head.uri
            .to_string()
            .ends_with(&format!("api-version={DEFAULT_API_VERSION}"))
    );
}

fn azure_with_token() -> Azure {
    azure(
        ProviderConfig::new()
            .bearer_token("entra-token-0123456789")
            .deployment("fixed"),
    )
}

#[test]
fn invalid_settings_and_requests_are_refused() {
    assert_eq!(
        Azure::new(&ProviderConfig::new()).unwrap_err(),
        InvalidConfig::Missing("api_base")
    );
    let base = || ProviderConfig::new().api_base("https://res.openai.azure.com");
    assert!(Azure::new(&base().api_version("2024&x=1")).is_err());
    assert!(Azure::new(&base().deployment("a/b")).is_err());
    let azure = azure(ProviderConfig::new());
    let mut head = Request::new(()).into_parts().0;
    let failure = azure
        .prepare(&mut head, br#"{"model":"../x","messages":[]}"#, 0)
        .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::BadRequest);
    assert!(azure.prepare(&mut head, b"[]", 0).is_err());
}

#[test]
fn a_filtered_prompt_is_a_content_policy_failure_with_its_reason() {
    let body = fake::content_filter_error("violence").to_string();
    let failure = azure(ProviderConfig::new()).classify(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        body.as_bytes(),
    );
    assert_eq!(failure.class(), ErrorClass::ContentPolicy);
    assert!(
        failure.message().contains("content management policy"),
        "{}",
        failure.message()
    );
    assert!(
        failure.message().ends_with("(filtered: violence)"),
        "{}",
        failure.message()
    );
    let rendered: Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
    assert_eq!(rendered["error"]["code"], "content_filter");

    // Anything else is classified as OpenAI's.
    let body = openai::error_body("Rate limit reached", "requests", Some("429")).to_string();
    let failure = azure(ProviderConfig::new()).classify(
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        body.as_bytes(),
    );
    assert_eq!(failure.class(), ErrorClass::RateLimited);
}

#[test]
fn a_filtered_answer_is_never_an_empty_success() {
    let azure = azure(ProviderConfig::new());
    let exchange = Exchange {
        stream: false,
        include_usage: false,
        model: "m".into(),
        created: 0,
    };
    let failure = azure
        .answer(
            &exchange,
            Bytes::from(fake::filtered_completion("sexual").to_string()),
        )
        .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::ContentPolicy);
    assert!(failure.message().contains("sexual"));
    // A normal answer goes through untouched.
    let ok = Bytes::from(openai::chat_completion("hi").to_string());
    assert_eq!(azure.answer(&exchange, ok.clone()).unwrap(), ok);
}

fn sse(chunks: &[Value]) -> Bytes {
    let mut out = String::new();
    for chunk in chunks {
        out += &format!("data: {chunk}\n\n");
    }
    Bytes::from(out + "data: [DONE]\n\n")
}

#[test]
fn streams_drop_filter_annotations_and_fail_a_filtered_start() {
    let mut chunks = vec![fake::prompt_filter_chunk()];
    chunks.extend(openai::chunks(&["Hi"]));
    let out = translate_all(AzureStream::new(), [sse(&chunks)]).unwrap();
    let expected: String = openai::chunks(&["Hi"])
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .collect::<String>()
        + "data: [DONE]\n\n";
    assert_eq!(out, expected);

    let filtered = vec![
        fake::prompt_filter_chunk(),
        openai::chunks(&[])[0].clone(),
        fake::filtered_chunk("hate"),
    ];
    let failure = translate_all(AzureStream::new(), [sse(&filtered)]).unwrap_err();
    assert_eq!(failure.class(), ErrorClass::ContentPolicy);
    assert!(failure.message().contains("hate"));

    // After content, the finish stays what OpenAI means by it.
    let mut late = openai::chunks(&["partial"]);
    late.pop();
    late.push(fake::filtered_chunk("hate"));
    let out = translate_all(AzureStream::new(), [sse(&late)]).unwrap();
    assert!(
        std::str::from_utf8(&out)
            .unwrap()
            .contains("\"finish_reason\":\"content_filter\"")
    );
}

#[test]
fn embeddings_and_legacy_completions_go_to_their_own_deployment_urls() {
    // Azure's REST reference ("Azure OpenAI in Azure AI Foundry Models REST
    // API reference"): .../openai/deployments/{deployment-id}/embeddings and
    // .../completions, each with ?api-version=.
    let azure = azure(ProviderConfig::new().api_key("azure-key-0123456789"));
    let body =
        json!({"model": "azure/embed-prod", "input": ["a", "b"], "encoding_format": "base64"});
    for (path, expected) in [
        (
            "/embeddings",
            "/openai/deployments/embed-prod/embeddings?api-version=",
        ),
        (
            "/completions",
            "/openai/deployments/embed-prod/completions?api-version=",
        ),
        (
            "/chat/completions",
            "/openai/deployments/embed-prod/chat/completions?api-version=",
        ),
    ] {
        let (mut head, ()) = Request::post(path).body(()).unwrap().into_parts();
        let bytes = body.to_string();
        let (out, exchange) = azure.prepare(&mut head, bytes.as_bytes(), 0).unwrap();
        assert!(
            head.uri.to_string().contains(expected),
            "{path}: {}",
            head.uri
        );
        // The body goes as it came: vectors asked for as base64 stay so.
        assert_eq!(out, bytes);
        assert!(!exchange.stream);
    }
}

/// The Responses API's URL from Microsoft's "Azure OpenAI Responses API"
/// page: the dated route with `api-version`, else the v1 API.
#[test]
fn a_responses_request_goes_to_the_resource_s_responses_api_as_written() {
    use tollgate_core::extensions::{NativeApi, NativeRequest};
    let native = NativeRequest {
        api: NativeApi::OpenAiResponses,
        body: Bytes::from_static(br#"{"model":"group","input":"Hi","store":false}"#),
        message_count: 1,
    };
    let head = || {
        Request::post("/chat/completions")
            .header("authorization", "Bearer client")
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let cases = [
        (
            Some("2025-04-01-preview"),
            "https://res.openai.azure.com/openai/responses?api-version=2025-04-01-preview",
        ),
        (None, "https://res.openai.azure.com/openai/v1/responses"),
        (
            Some("v1"),
            "https://res.openai.azure.com/openai/v1/responses",
        ),
        (
            Some("preview"),
            "https://res.openai.azure.com/openai/v1/responses?api-version=preview",
        ),
    ];
    for (version, url) in cases {
        let mut config = ProviderConfig::new().api_key("azure-key-0123456789");
        if let Some(version) = version {
            config = config.api_version(version);
        }
        let mut head = head();
        let body = azure(config)
            .responses(&mut head, &native, "azure/gpt-4o-prod")
            .unwrap();
        assert_eq!(head.uri, url);
        assert_eq!(head.headers["api-key"], "azure-key-0123456789");
        assert!(!head.headers.contains_key("authorization"));
        assert_eq!(
            body,
            r#"{"model":"gpt-4o-prod","input":"Hi","store":false}"#
        );
    }
    // A configured deployment names the model; a body without one is refused.
    let mut head = head();
    let body = azure_with_token()
        .responses(&mut head, &native, "anything")
        .unwrap();
    assert_eq!(body, r#"{"model":"fixed","input":"Hi","store":false}"#);
    let no_model = NativeRequest {
        body: Bytes::from_static(br#"{"input":"Hi"}"#),
        ..native
    };
    let failure = azure(ProviderConfig::new().api_key("k"))
        .responses(&mut head, &no_model, "gpt")
        .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::BadRequest);
}
