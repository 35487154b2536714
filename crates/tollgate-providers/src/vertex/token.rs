//! The access token of a service account: asked for once, shared by every
//! request, refreshed before it expires.
//!
//! The token endpoint's answer is `{access_token, expires_in, token_type}`
//! (Google's "Using OAuth 2.0 for Server to Server Applications", "Handling
//! the response"); its errors are OAuth's `{error, error_description}`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tollgate_core::{BoxError, ErrorClass, Failure, Scope};
use tower::ServiceExt;
use tower_service::Service;

use super::account::ServiceAccount;
use crate::buffered::BufferedBody;

/// How long before its expiry a token is replaced: Google's client
/// libraries refresh a few minutes early, so a request never leaves with a
/// token about to lapse. A shorter-lived token is refreshed at half its
/// life.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How long a token request may take before it fails as unavailable.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest token answer read.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// How many times a request starts waiting again when the token request it
/// waited on was abandoned (its caller went away).
const MAX_WAITS: usize = 3;

/// The token as sent, and when to replace it.
#[derive(Clone)]
struct Token {
    /// `Bearer …`, marked sensitive.
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

type Outcome = Option<Result<Token, Failure>>;

/// One service account's token, shared by every request made with it.
///
/// Single flight: the request that finds no fresh token asks for one; any
/// request arriving meanwhile waits for that answer (or, while the old
/// token is still valid, goes with it). The state sits behind a mutex held
/// only to read or swap it, never across an `.await`.
pub(crate) struct TokenCache {
    account: ServiceAccount,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    token: Option<Token>,
    /// The token request under way, if any: its answer arrives here.
    pending: Option<watch::Receiver<Outcome>>,
    /// Counts token requests, so an abandoned one clears only itself.
    generation: u64,
}

/// What a request does for its token.
enum Next {
    Ready(HeaderValue),
    Wait(watch::Receiver<Outcome>),
    Ask(Asking),
}

impl TokenCache {
    pub(crate) fn new(account: ServiceAccount) -> Self {
        TokenCache {
            account,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn account(&self) -> &ServiceAccount {
        &self.account
    }

    /// The `Authorization` header for a request, asking `client` for a
    /// token when none is fresh.
    pub(crate) async fn authorization<S, ReqB, ResB>(
        self: &Arc<Self>,
        client: S,
    ) -> Result<HeaderValue, Failure>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        S::Error: Into<BoxError>,
        ReqB: BufferedBody,
        ResB: Body<Data = Bytes>,
        ResB::Error: Into<BoxError>,
    {
        for _ in 0..MAX_WAITS {
            match self.next(Instant::now()) {
                Next::Ready(header) => return Ok(header),
                Next::Ask(asking) => {
                    let outcome = request_token(&self.account, client).await;
                    return asking.finish(outcome).map(|token| token.header);
                }
                Next::Wait(mut pending) => {
                    if let Ok(outcome) = pending.wait_for(Option::is_some).await
                        && let Some(outcome) = &*outcome
                    {
                        return outcome.clone().map(|token| token.header);
                    }
                    // The asking request went away: look again.
                }
            }
        }
        Err(unavailable("no access token could be obtained"))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next(self: &Arc<Self>, now: Instant) -> Next {
        let mut state = self.state();
        if let Some(token) = &state.token
            && now < token.refresh_at
        {
            return Next::Ready(token.header.clone());
        }
        if let Some(pending) = &state.pending {
            return match &state.token {
                // Being refreshed, still valid: no need to wait.
                Some(token) if now < token.expires_at => Next::Ready(token.header.clone()),
                _ => Next::Wait(pending.clone()),
            };
        }
        let (sender, receiver) = watch::channel(None);
        state.pending = Some(receiver);
        state.generation += 1;
        Next::Ask(Asking {
            cache: self.clone(),
            sender: Some(sender),
            generation: state.generation,
        })
    }
}

/// The right, and duty, to ask for the next token: its answer is stored and
/// sent to the waiting requests; dropped unanswered, it lets them retry.
struct Asking {
    cache: Arc<TokenCache>,
    sender: Option<watch::Sender<Outcome>>,
    generation: u64,
}

impl Asking {
    fn finish(mut self, outcome: Result<Token, Failure>) -> Result<Token, Failure> {
        {
            let mut state = self.cache.state();
            if state.generation == self.generation {
                state.pending = None;
                if let Ok(token) = &outcome {
                    state.token = Some(token.clone());
                }
            }
        }
        if let Some(sender) = self.sender.take() {
            sender.send_replace(Some(outcome.clone()));
        }
        outcome
    }
}

impl Drop for Asking {
    fn drop(&mut self) {
        if self.sender.is_some() {
            let mut state = self.cache.state();
            if state.generation == self.generation {
                state.pending = None;
            }
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: String,
}

/// Asks the token endpoint for a token.
async fn request_token<S, ReqB, ResB>(account: &ServiceAccount, client: S) -> Result<Token, Failure>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ReqB: BufferedBody,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    let assertion = account
        .assertion(SystemTime::now())
        .ok_or_else(|| auth("the service account's key could not sign"))?;
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    );
    let request = Request::post(account.token_uri())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(ReqB::from_bytes(Bytes::from(form)))
        .map_err(|_| auth("the service account's token_uri is not a URL"))?;
    let asked_at = Instant::now();
    let exchange = async {
        let response = client
            .oneshot(request)
            .await
            .map_err(|_| unavailable("Google's token endpoint could not be reached"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_TOKEN_BODY)
            .collect()
            .await
            .map_err(|_| unavailable("Google's token endpoint answer could not be read"))?
            .to_bytes();
        Ok::<_, Failure>((status, body))
    };
    let (status, body) = tokio::time::timeout(TOKEN_TIMEOUT, exchange)
        .await
        .map_err(|_| unavailable("Google's token endpoint timed out"))??;
    if !status.is_success() {
        return Err(refused(status, &body));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|_| unavailable("Google's token endpoint answer could not be read"))?;
    if answer
        .token_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err(unavailable("Google's token endpoint gave no bearer token"));
    }
    let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
        .map_err(|_| unavailable("Google's token endpoint gave an unusable token"))?;
    header.set_sensitive(true);
    let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
    let margin = REFRESH_MARGIN.min(lifetime / 2);
    Ok(Token {
        header,
        refresh_at: asked_at + (lifetime - margin),
        expires_at: asked_at + lifetime,
    })
}

/// A token request the endpoint refused: the account's fault (a revoked
/// key, a wrong email: `auth`) or the endpoint's (`upstream_unavailable`).
fn refused(status: StatusCode, body: &[u8]) -> Failure {
    let error: OAuthError = serde_json::from_slice(body).unwrap_or_default();
    match status.as_u16() {
        400 | 401 | 403 => {
            // OAuth's error codes are short words (`invalid_grant`); the
            // description may name the account, so it stays out.
            let code = Some(error.error.as_str())
                .filter(|c| !c.is_empty() && c.len() <= 40)
                .filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            let message = match code {
                Some(code) => {
                    format!("Google refused the service account's token request ({code})")
                }
                None => "Google refused the service account's token request".to_owned(),
            };
            auth(message).with_upstream_status(status)
        }
        _ => unavailable("Google's token endpoint failed").with_upstream_status(status),
    }
}

fn auth(message: impl Into<std::borrow::Cow<'static, str>>) -> Failure {
    Failure::new(ErrorClass::Auth, message)
        .with_scope(Scope::Key)
        .with_status(StatusCode::BAD_GATEWAY)
        .with_code("upstream_auth_failed")
}

fn unavailable(message: &'static str) -> Failure {
    Failure::new(ErrorClass::UpstreamUnavailable, message)
        .with_subkind("token_unavailable")
        .with_scope(Scope::Provider)
}
