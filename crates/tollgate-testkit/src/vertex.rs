//! A fake Google Vertex AI: a service account's token endpoint and the
//! model routes, in front of a scripted [`Upstream`].
//!
//! Shapes from Google's public references:
//! - the token exchange, "Using OAuth 2.0 for Server to Server Applications"
//!   (<https://developers.google.com/identity/protocols/oauth2/service-account>):
//!   a form `POST` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
//!   and an RS256 `assertion` whose claims are `iss`, `scope`, `aud` (the
//!   token URI), `iat` and `exp` (at most an hour on); the answer
//!   `{access_token, expires_in, token_type: "Bearer"}`, errors
//!   `{error: "invalid_grant", error_description}`;
//! - the routes, Google Cloud's "Vertex AI API reference"
//!   (<https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.publishers.models/generateContent>):
//!   `/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
//!   and `:streamGenerateContent?alt=sse`; Anthropic's "Claude on Vertex AI"
//!   (<https://docs.anthropic.com/en/api/claude-on-vertex-ai>):
//!   `…/publishers/anthropic/models/{model}:rawPredict` and
//!   `:streamRawPredict`, `anthropic_version: "vertex-2023-10-16"` in the
//!   body, no `model`; and Vertex AI's "Count tokens for Claude models":
//!   `…/publishers/anthropic/models/count-tokens:rawPredict`, Anthropic's
//!   body with its `model` (as LiteLLM sends it);
//! - errors in Google's shape (<https://cloud.google.com/apis/design/errors>):
//!   `{"error":{"code","message","status"}}`.
//!
//! The fake checks what a real one would: the assertion's signature (with
//! the public half of the throwaway test key in `fixtures/`) and claims,
//! and on every model route a bearer token it issued and that has not
//! expired (tokio time, so paused tests can expire one). What a model route
//! answers is scripted on [`upstream`](Vertex::upstream), like any
//! [`Upstream`].
//!
//! ```
//! use tollgate_testkit::{Reply, anthropic, vertex};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fake = vertex::Vertex::start().await;
//! fake.set_expires_in(3600);
//! fake.upstream().push(Reply::json(200, anthropic::message("Hi")));
//! // The service account the code under test signs in with.
//! let key_file = fake.service_account_json();
//! assert!(key_file.contains(&fake.token_uri()));
//! assert_eq!(fake.token_requests(), 0);
//! # }
//! ```

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{RecordedRequest, Reply, Upstream};

/// The throwaway test key's private half (PKCS#8): it signs the test
/// service account's assertions and guards nothing.
pub const TEST_PRIVATE_KEY: &str = include_str!("../fixtures/vertex-test-key.pem");

/// The throwaway test key's public half (PKCS#1), which the fake checks
/// assertions with.
const TEST_PUBLIC_KEY: &str = include_str!("../fixtures/vertex-test-key.pub.pem");

/// The test service account's email.
pub const CLIENT_EMAIL: &str = "tollgate-test@tollgate-test.iam.gserviceaccount.com";

/// The test service account's project.
pub const PROJECT: &str = "tollgate-test";

/// The scope the assertion must ask for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The `anthropic_version` Claude on Vertex requires.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// A fake Vertex AI on `127.0.0.1`: see the [module](self).
pub struct Vertex {
    upstream: Arc<Upstream>,
    tokens: Arc<Tokens>,
}

struct Tokens {
    token_uri: String,
    public_key: Vec<u8>,
    expires_in: AtomicU64,
    requests: AtomicUsize,
    /// Issued tokens and when each expires.
    issued: Mutex<HashMap<String, Instant>>,
    /// A reply that replaces the token endpoint's answers (a refusal).
    refusal: Mutex<Option<Reply>>,
    /// How long the token endpoint waits before answering, in milliseconds.
    delay_ms: AtomicU64,
    /// Every assertion (signed JWT) the token endpoint received.
    assertions: Mutex<Vec<String>>,
}

impl Vertex {
    /// Starts the fake on `127.0.0.1:0`; tokens last an hour until
    /// [`set_expires_in`](Self::set_expires_in).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn start() -> Self {
        let upstream = Arc::new(Upstream::start().await);
        let tokens = Arc::new(Tokens {
            token_uri: format!("{}/token", upstream.url()),
            public_key: pem_der(TEST_PUBLIC_KEY),
            expires_in: AtomicU64::new(3600),
            requests: AtomicUsize::new(0),
            issued: Mutex::new(HashMap::new()),
            refusal: Mutex::new(None),
            delay_ms: AtomicU64::new(0),
            assertions: Mutex::new(Vec::new()),
        });
        let checks = tokens.clone();
        upstream.set_intercept(Arc::new(move |request| checks.intercept(request)));
        Vertex { upstream, tokens }
    }

    /// The scripted upstream behind the model routes: push what they answer,
    /// read what they received.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The base URL (the `api_base` that replaces Vertex's host).
    pub fn url(&self) -> String {
        self.upstream.url()
    }

    /// The token endpoint's URL.
    pub fn token_uri(&self) -> String {
        self.tokens.token_uri.clone()
    }

    /// The test service account's key file, pointing at this fake's token
    /// endpoint.
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": TEST_PRIVATE_KEY,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "token_uri": self.token_uri(),
        })
        .to_string()
    }

    /// The `expires_in` of the tokens issued from now on, in seconds.
    pub fn set_expires_in(&self, seconds: u64) {
        self.tokens.expires_in.store(seconds, Ordering::Relaxed);
    }

    /// Makes the token endpoint answer `reply` to every request (`None`
    /// restores it).
    pub fn refuse_tokens(&self, reply: Option<Reply>) {
        *self
            .tokens
            .refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reply;
    }

    /// Makes the token endpoint wait `delay` (tokio time) before each
    /// answer, so a test can act while a token request is under way.
    pub fn set_token_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.tokens.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// How many token requests arrived (refused ones included).
    pub fn token_requests(&self) -> usize {
        self.tokens.requests.load(Ordering::Relaxed)
    }

    /// Every token issued so far: what must never reach a log or a client.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.tokens.issued().keys().cloned().collect()
    }

    /// Every assertion (the signed JWT of the token exchange) the token
    /// endpoint received, in order: like the tokens, never to be seen in a
    /// log or by a client. Token requests are answered here, so the
    /// [`upstream`](Self::upstream) records none of them.
    pub fn assertions(&self) -> Vec<String> {
        self.tokens
            .assertions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `request` over a new in-memory connection to the fake (HTTP/1.1),
    /// so a test can run under paused tokio time.
    ///
    /// # Errors
    ///
    /// When the exchange fails (a scripted reset, say).
    pub async fn send_in_memory<B>(
        &self,
        request: Request<B>,
    ) -> Result<Response<Incoming>, Box<dyn Error + Send + Sync>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let io = TokioIo::new(self.upstream.connect_in_memory());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        Ok(sender.send_request(request).await?)
    }
}

impl fmt::Debug for Vertex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vertex")
            .field("url", &self.upstream.url())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    fn issued(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.issued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers the token endpoint, or refuses a model request whose
    /// credentials or shape a real Vertex would refuse; `None` leaves the
    /// request to the script.
    fn intercept(&self, request: &RecordedRequest) -> Option<Reply> {
        if request.uri.path() == "/token" {
            self.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(assertion) = form_field(&request.body, "assertion") {
                self.assertions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(assertion.to_owned());
            }
            let refusal = self
                .refusal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let delay = Duration::from_millis(self.delay_ms.load(Ordering::Relaxed));
            return Some(
                refusal
                    .unwrap_or_else(|| self.token(request))
                    .delay_headers(delay),
            );
        }
        let bearer = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let valid = bearer
            .and_then(|token| self.issued().get(token).copied())
            .is_some_and(|expires| Instant::now() < expires);
        if !valid {
            return Some(google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            ));
        }
        route_error(request).map(|message| google_error(404, "NOT_FOUND", &message))
    }

    /// A token for a valid assertion, `invalid_grant` otherwise.
    fn token(&self, request: &RecordedRequest) -> Reply {
        if let Err(why) = self.check_assertion(request) {
            return Reply::json(
                400,
                json!({"error": "invalid_grant", "error_description": why}),
            );
        }
        let n = self.requests.load(Ordering::Relaxed);
        let token = format!(
            "ya29.fake-access-token-{n}-{:08x}",
            n.wrapping_mul(2_654_435_761)
        );
        let expires_in = self.expires_in.load(Ordering::Relaxed);
        self.issued().insert(
            token.clone(),
            Instant::now() + Duration::from_secs(expires_in),
        );
        Reply::json(
            200,
            json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}),
        )
    }

    fn check_assertion(&self, request: &RecordedRequest) -> Result<(), &'static str> {
        if request.method != http::Method::POST {
            return Err("POST required");
        }
        let form_type = request
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if form_type != Some("application/x-www-form-urlencoded") {
            return Err("Content-Type must be application/x-www-form-urlencoded");
        }
        let body = std::str::from_utf8(&request.body).map_err(|_| "Bad Request")?;
        let form: HashMap<&str, &str> = body.split('&').filter_map(|p| p.split_once('=')).collect();
        if form.get("grant_type") != Some(&"urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
        {
            return Err("Invalid grant_type");
        }
        let assertion = form.get("assertion").ok_or("Missing assertion")?;
        let mut parts = assertion.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("Invalid JWT");
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "Invalid JWT")?;
        let signed = &assertion[..header.len() + 1 + claims.len()];
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| "Invalid JWT Signature.")?;
        let decode = |part: &str| -> Option<Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
        };
        let header = decode(header).ok_or("Invalid JWT")?;
        let claims = decode(claims).ok_or("Invalid JWT")?;
        if header["alg"] != "RS256" {
            return Err("Invalid JWT: alg must be RS256");
        }
        if claims["iss"] != CLIENT_EMAIL {
            return Err("Invalid JWT: unknown issuer");
        }
        if claims["aud"] != self.token_uri.as_str() {
            return Err("Invalid JWT: aud must be the token URI");
        }
        if !claims["scope"]
            .as_str()
            .is_some_and(|s| s.split(' ').any(|s| s == SCOPE))
        {
            return Err("Invalid JWT: scope");
        }
        let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
            return Err("Invalid JWT: iat and exp required");
        };
        if exp <= iat || exp - iat > 3600 {
            return Err("Invalid JWT: Token must be a short-lived token (60 minutes)");
        }
        Ok(())
    }
}

/// The raw (still percent-encoded) value of `name` in a form body.
fn form_field<'a>(body: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// Why a model request names no route a real Vertex serves, if it does
/// not: the path, the method, and Claude's body.
fn route_error(request: &RecordedRequest) -> Option<String> {
    let path = request.uri.path();
    let tail = path
        .strip_prefix("/v1/projects/")
        .and_then(|rest| rest.split_once("/locations/"))
        .and_then(|(_, rest)| rest.split_once("/publishers/"))
        .map(|(_, rest)| rest);
    let Some((publisher, model)) = tail.and_then(|t| t.split_once("/models/")) else {
        return Some(format!("The requested URL {path} was not found."));
    };
    let Some((model, method)) = model.split_once(':') else {
        return Some(format!("The requested URL {path} was not found."));
    };
    let sse = request.uri.query() == Some("alt=sse");
    match (publisher, method) {
        ("google", "generateContent") => None,
        ("google", "streamGenerateContent") if sse => None,
        // Google's "Count tokens for Claude models": Anthropic's body, the
        // model named in it.
        ("anthropic", "rawPredict") if model == "count-tokens" => {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            (!body["model"].is_string()).then(|| "model is required to count tokens".into())
        }
        // Text embeddings: a non-empty list of `instances`, each with its
        // `content` ("Text embeddings API").
        ("google", "predict") => {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let valid = body["instances"].as_array().is_some_and(|instances| {
                !instances.is_empty() && instances.iter().all(|i| i["content"].is_string())
            });
            (!valid).then(|| "instances must be a non-empty list of {content}".into())
        }
        ("anthropic", "rawPredict" | "streamRawPredict") => {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            if body["anthropic_version"] != ANTHROPIC_VERSION || body.get("model").is_some() {
                Some("anthropic_version must be vertex-2023-10-16 and model absent".into())
            } else {
                None
            }
        }
        _ => Some(format!("The requested URL {path} was not found.")),
    }
}

/// A `:predict` answer of Vertex AI's text embeddings
/// (<https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api>):
/// a prediction for each `(values, token_count)`, in order.
pub fn predictions(vectors: &[(&[f64], u64)]) -> Value {
    let predictions: Vec<Value> = vectors
        .iter()
        .map(|(values, tokens)| {
            json!({"embeddings": {
                "statistics": {"truncated": false, "token_count": tokens},
                "values": values,
            }})
        })
        .collect();
    json!({"predictions": predictions, "metadata": {"billableCharacterCount": 0}})
}

/// An error in Google's shape: `{"error":{"code","message","status"}}`.
pub fn google_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(
        code,
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// The path of `model`'s `method` for the test project in `location`
/// (`publisher` `google` or `anthropic`).
pub fn model_path(location: &str, publisher: &str, model: &str, method: &str) -> String {
    format!(
        "/v1/projects/{PROJECT}/locations/{location}/publishers/{publisher}/models/{model}:{method}"
    )
}

fn pem_der(pem: &str) -> Vec<u8> {
    let base64: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD
        .decode(base64)
        .expect("testkit: the fixture key is PEM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_read_raw() {
        let body = b"grant_type=urn%3Aietf&assertion=a.b.c";
        assert_eq!(form_field(body, "assertion"), Some("a.b.c"));
        assert_eq!(form_field(body, "grant_type"), Some("urn%3Aietf"));
        assert_eq!(form_field(body, "scope"), None);
        assert_eq!(form_field(b"\xff", "assertion"), None);
    }

    #[test]
    fn route_errors_name_what_a_real_vertex_refuses() {
        let request = |path: &str, body: Value| RecordedRequest {
            method: http::Method::POST,
            uri: path.parse().unwrap(),
            version: http::Version::HTTP_11,
            headers: http::HeaderMap::new(),
            body: Bytes::from(body.to_string()),
            received_at: Instant::now(),
        };
        let gemini = model_path(
            "us-central1",
            "google",
            "gemini-2.0-flash",
            "generateContent",
        );
        assert_eq!(route_error(&request(&gemini, json!({}))), None);
        let claude = model_path(
            "us-east5",
            "anthropic",
            "claude-3-5-sonnet@20240620",
            "rawPredict",
        );
        let good = json!({"anthropic_version": ANTHROPIC_VERSION, "messages": []});
        assert_eq!(route_error(&request(&claude, good)), None);
        let with_model = json!({"anthropic_version": ANTHROPIC_VERSION, "model": "claude"});
        assert!(route_error(&request(&claude, with_model)).is_some());
        let count = model_path("us-east5", "anthropic", "count-tokens", "rawPredict");
        let counted = json!({"model": "claude-3-5-sonnet@20240620", "messages": []});
        assert_eq!(route_error(&request(&count, counted)), None);
        assert!(route_error(&request(&count, json!({"messages": []}))).is_some());
        let stream = model_path(
            "us-central1",
            "google",
            "gemini-2.0-flash",
            "streamGenerateContent",
        );
        assert!(
            route_error(&request(&stream, json!({}))).is_some(),
            "alt=sse required"
        );
        assert!(route_error(&request(&format!("{stream}?alt=sse"), json!({}))).is_none());
        assert!(route_error(&request("/v1/chat/completions", json!({}))).is_some());
    }
}
