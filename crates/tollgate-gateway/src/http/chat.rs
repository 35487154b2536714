//! The walk through the stack that every completion route shares
//! ([`handle`]): `POST /v1/chat/completions`, the legacy completions and the
//! embeddings in OpenAI's shape, and `/v1/messages` and `/v1/responses` in
//! their APIs' own ([`Shape`]).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tollgate_balance::ResolvedGroup;
use tollgate_core::classify::is_event_stream;
use tollgate_core::extensions::{
    AllowedGroups, AttemptedFallbacks, AttemptedRetries, Deadline, KeyName, ModelGroup, RequestId,
    Target,
};
use tollgate_core::{ChatRequest, ErrorClass, Failure, Redactor, RequestBody, RequestFallbacks};
use tollgate_cost::RequestTally;
use tollgate_fallback::{ATTEMPTED_FALLBACKS, GaveUp as FallbackGaveUp};
use tollgate_limits::{Limit, RateLimited};
use tollgate_retry::{ATTEMPTED_RETRIES, GaveUp as RetryGaveUp};

use super::App;
use super::shape::Shape;
use crate::access_log::AccessLog;
use crate::grace::GracePeriod;
use crate::keys::Principal;
use crate::provider::RATE_LIMIT_PREFIX;
use crate::response::GatewayBody;

const X_MODEL_GROUP: HeaderName = HeaderName::from_static("x-tollgate-model-group");
const X_DEPLOYMENT: HeaderName = HeaderName::from_static("x-tollgate-deployment");

/// Answers a request of the route `shape` through the stack: the key's
/// models, limits and budget, the cascade, retries, breakers and cost; a
/// model group whose mode cannot serve the request's operation is a 400.
/// Answers and errors are in the route's shape.
pub(crate) async fn handle<S: Shape, B>(
    app: &App,
    shape: S,
    request: Request<B>,
    principal: Principal,
    log: &mut AccessLog,
) -> Response<GatewayBody>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let redactor = redactor(app, request.headers());
    match forward(app, &shape, request, principal, log, &redactor).await {
        Ok(response) => response,
        Err((failure, attempts)) => {
            log.class = Some(failure.class());
            let mut response: Response<GatewayBody> = match failure.limited {
                Some(limited) => S::limited(limited, &failure.failure),
                // The one place a chat error becomes an answer: whatever
                // upstream text it carries is redacted here.
                None => S::error_response(&redactor.redact_failure(&failure.failure)),
            };
            let headers = response.headers_mut();
            if let Some(Attempts { retries, fallbacks }) = &attempts {
                log.retries = *retries;
                log.fallbacks = *fallbacks;
            }
            if let Some(Attempts { retries, fallbacks }) = attempts {
                headers.insert(ATTEMPTED_RETRIES, count_value(retries));
                headers.insert(ATTEMPTED_FALLBACKS, count_value(fallbacks));
            }
            response
        }
    }
}

/// What makes upstream text safe for this request's client: the config's
/// secrets, and the credential the request presented (read where the keys
/// read it: `Authorization`, else `x-api-key`, else `api-key`).
pub(super) fn redactor(app: &App, headers: &http::HeaderMap) -> Redactor {
    let redactor = Redactor::new(app.secrets.clone());
    // Names, not `&str`s: a `&str` is parsed into a name at each lookup.
    const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
    const API_KEY: HeaderName = HeaderName::from_static("api-key");
    let presented = [AUTHORIZATION, X_API_KEY, API_KEY]
        .iter()
        .find_map(|name| headers.get(name));
    match presented {
        Some(value) => redactor.with_presented(value.clone()),
        None => redactor,
    }
}

/// The whole request body, refused past the gateway's size limit (before a
/// byte is read when `Content-Length` says so), or when it does not arrive in
/// time (see [`BodyReader`](crate::request_body::BodyReader)).
///
/// Not an `async fn`: its future would keep the request's head (dead once
/// the length is read) beside the reader's, in every handler's future.
pub(crate) fn read_request<B>(
    app: &App,
    request: Request<B>,
) -> impl Future<Output = Result<Bytes, Failure>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    app.body_reader.read(request.into_body(), declared)
}

/// A key asking for a model group it may not use: 403, naming the key by
/// its name and the group, never the key.
pub(super) fn refuse_model(principal: &Principal, group: &str) -> Failure {
    let name = principal
        .virtual_key()
        .map_or_else(|| Arc::from("this key"), |key| key.name());
    Failure::new(
        ErrorClass::Auth,
        format!(
            "The key '{name}' may not use the model `{}`.",
            tollgate_core::sanitize_message(group)
        ),
    )
    .with_status(StatusCode::FORBIDDEN)
    .with_code("model_not_allowed")
    .with_param("model")
}

/// The fallbacks the request named in its body, each resolved to the group
/// it names (an alias to its target), for the cascade: a name no group
/// answers to is a 400, and a group the key may not use a 403 — a key
/// reaches no model through its fallbacks that it could not ask for.
fn body_fallbacks(
    app: &App,
    chat: &ChatRequest,
    principal: &Principal,
) -> Result<Option<RequestFallbacks>, Failure> {
    let Some(named) = chat.fallbacks() else {
        return Ok(None);
    };
    let resolved = named
        .resolved(|name| {
            app.routing
                .group(&app.groups, name)
                .map(|group| group.name().clone())
        })
        .map_err(|unknown| {
            Failure::new(
                ErrorClass::BadRequest,
                format!(
                    "The fallback model `{}` does not exist: fallbacks name the models of this \
                     gateway's model_list.",
                    tollgate_core::sanitize_message(&unknown)
                ),
            )
            .with_code("invalid_fallback_model")
            .with_param("fallbacks")
        })?;
    if let Some(refused) = resolved
        .groups()
        .find(|group| !principal.allows_model(group))
    {
        return Err(refuse_model(principal, refused).with_param("fallbacks"));
    }
    Ok(Some(resolved))
}

/// Why a request was not answered: a classified failure, and for a rate
/// limit the complete 429 (with its `Retry-After` and `x-ratelimit-*`
/// headers).
struct Refusal {
    failure: Failure,
    limited: Option<Response<GatewayBody>>,
}

impl From<Failure> for Refusal {
    fn from(failure: Failure) -> Self {
        Refusal {
            failure,
            limited: None,
        }
    }
}

impl Refusal {
    fn class(&self) -> ErrorClass {
        self.failure.class()
    }
}

/// The `limit` label of `tollgate_rate_limit_rejections_total`.
fn limit_label(limit: Limit) -> &'static str {
    match limit {
        Limit::Requests => "rpm",
        Limit::Tokens => "tpm",
        Limit::Parallel => "parallel",
        Limit::Budget => "budget",
        _ => "other",
    }
}

/// A count as a header value; the usual small ones without an allocation.
fn count_value(count: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(count as usize) {
        Some(digit) => HeaderValue::from_static(digit),
        None => HeaderValue::from(count),
    }
}

/// Retries and fallbacks made before a failure.
struct Attempts {
    retries: u32,
    fallbacks: u32,
}

impl Attempts {
    /// What the cascade and the retry layer report on their way out; `None`
    /// when the failure did not come through them.
    fn of(error: &(dyn std::error::Error + 'static)) -> Option<Attempts> {
        let chain = || std::iter::successors(Some(error), |e| e.source());
        let fallbacks = chain().find_map(|e| e.downcast_ref::<FallbackGaveUp>());
        // The last group's retries: the retry layer's report nearest the
        // cascade's.
        let retries = chain().find_map(|e| e.downcast_ref::<RetryGaveUp>());
        (fallbacks.is_some() || retries.is_some()).then(|| Attempts {
            retries: retries.map_or(0, RetryGaveUp::retries),
            fallbacks: fallbacks.map_or(0, FallbackGaveUp::fallbacks),
        })
    }
}

/// The response, or the failure with the attempts made before it (when the
/// request got as far as the stack).
async fn forward<S: Shape, B>(
    app: &App,
    shape: &S,
    request: Request<B>,
    principal: Principal,
    log: &mut AccessLog,
    redactor: &Redactor,
) -> Result<Response<GatewayBody>, (Refusal, Option<Attempts>)>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client_deadline =
        crate::deadlines::client_deadline(request.headers()).map_err(|f| (f.into(), None))?;
    let bytes = read_request(app, request)
        .await
        .map_err(|f| (f.into(), None))?;
    // The route's own body, for an inbound layer to pass on untouched.
    let sent = bytes.clone();
    let chat = shape.parse(bytes).map_err(|f| (f.into(), None))?;
    log.stream = chat.stream();
    // A key's own `aliases` name groups for its clients.
    let model = match principal.virtual_key() {
        Some(key) => key.resolve_model(chat.model()),
        None => chat.model(),
    };
    let group = app
        .routing
        .group(&app.groups, model)
        .ok_or_else(|| {
            Failure::new(
                ErrorClass::ModelNotFound,
                format!(
                    "The model `{}` does not exist or you do not have access to it.",
                    tollgate_core::sanitize_message(chat.model())
                ),
            )
            .with_param("model")
        })
        .map_err(|f| (f.into(), None))?;
    log.model_group = Some(group.name().clone());
    log.key = principal.virtual_key().map(|key| key.name());
    if !principal.allows_model(group.name()) {
        return Err((refuse_model(&principal, group.name()).into(), None));
    }
    // The key's team: blocked, its models, its limits beside the key's.
    let team = crate::teams::admit(&app.teams, &principal, group.name(), super::unix_ms())
        .await
        .map_err(|f| (f.into(), None))?;
    app.catalog
        .check(group.name(), chat.operation())
        .map_err(|f| (f.into(), None))?;
    let body_fallbacks = body_fallbacks(app, &chat, &principal).map_err(|f| (f.into(), None))?;
    let stream = chat.stream();
    // The body carries the parsed request: the layers read it there.
    let mut request = Request::new(RequestBody::from_chat(chat));
    *request.extensions_mut() = crate::stack::roomy_extensions();
    if let Some(fallbacks) = body_fallbacks {
        request.extensions_mut().insert(fallbacks);
    }
    request
        .extensions_mut()
        .insert(ModelGroup(group.name().clone()));
    // Resolved here once: the balancer picks from this group, not another
    // lookup of its name.
    request
        .extensions_mut()
        .insert(ResolvedGroup(Arc::clone(group)));
    if stream {
        // For the cascade, which writes a broken stream's error event.
        request.extensions_mut().insert(redactor.clone());
    }
    request
        .extensions_mut()
        .insert(RequestId(log.request_id.clone()));
    if let Some(key) = principal.virtual_key() {
        // The key's name — never the key — for the ledger and the limits.
        request.extensions_mut().insert(KeyName(key.name()));
        request
            .extensions_mut()
            .insert(Arc::new(crate::limits::key_limits(key)));
        // A key limited to some groups is limited in the cascade too: a
        // fallback never answers with a group the key may not use.
        if !key.models.is_empty() && !key.models.iter().any(|m| m == "*") {
            let groups: Arc<[Arc<str>]> =
                key.models.iter().map(|m| Arc::from(m.as_str())).collect();
            request.extensions_mut().insert(AllowedGroups(groups));
        }
    }
    if let Some(team) = &team {
        team.apply(request.extensions_mut());
    }
    if let Some(user) = request.body().chat().and_then(|c| c.user()) {
        // The end user's limits beside the key's; a blocked one is refused.
        let user = user.clone();
        app.end_users
            .admit_request(request.extensions_mut(), user, super::unix_ms())
            .await
            .map_err(|f| (f.into(), None))?;
    }
    // The cost layer adds each attempt's tokens and cost to it; the access
    // log reads the sum when the response ends.
    let tally = Arc::new(RequestTally::new());
    request.extensions_mut().insert(tally.clone());
    log.tally = Some(tally);
    // One deadline for the whole request, retries and fallbacks included,
    // and the response's delivery to the client; the client may only
    // shorten it.
    let deadline = Deadline::after(client_deadline.map_or(app.request_deadline, |asked| {
        asked.min(app.request_deadline)
    }));
    request.extensions_mut().insert(deadline);
    let response = S::call(app.stack.clone(), request, sent)
        .await
        .map_err(|error| match RateLimited::find(&*error) {
            Some(limited) => {
                app.metrics.rate_limited(limit_label(limited.limit()));
                let refusal = Refusal {
                    failure: limited.failure().clone(),
                    limited: Some(limited.to_response()),
                };
                (refusal, None)
            }
            None => (Failure::from_error(&*error).into(), Attempts::of(&*error)),
        })?;
    // The layers' own headers (the cost, the attempts, the key's rate
    // limits) are on the response already; their extensions are for the log.
    log.retries = response
        .extensions()
        .get::<AttemptedRetries>()
        .map_or(0, |r| r.0);
    log.fallbacks = response
        .extensions()
        .get::<AttemptedFallbacks>()
        .map_or(0, |f| f.0);
    let target = response.extensions().get::<Target>().cloned();
    let mut response = wrap_success::<S>(response, &app.grace, redactor, deadline);
    if let Some(target) = target {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&target.model_group) {
            headers.insert(X_MODEL_GROUP, value);
        }
        if let Ok(value) = HeaderValue::from_str(&target.deployment_id) {
            headers.insert(X_DEPLOYMENT, value);
        }
        log.deployment = Some(target.deployment_id);
    }
    Ok(response)
}

/// Wraps a successful response for the client: a stream is guarded, a JSON
/// body is forwarded as it arrives, both until the request's deadline.
fn wrap_success<S: Shape>(
    response: Response<S::Body>,
    grace: &GracePeriod,
    redactor: &Redactor,
    deadline: Deadline,
) -> Response<GatewayBody> {
    let (parts, body) = response.into_parts();
    let stream = is_event_stream(&parts.headers);
    // The cascade's body already forwards streams whole events at a time and
    // ends a broken one with an error event, never a truncated success; the
    // shutdown's cut falls between two events too.
    let body = S::body(body).with_deadline(deadline.0, stream);
    let body = if stream {
        body.cut_at_grace_end(grace)
    } else {
        body
    };
    let mut response = for_client(parts, body, redactor);
    if stream {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    response
}

/// The stack's answer as the client gets it: its status (a success; an
/// error status that came through as one is sent as 200) and its headers —
/// the few of the upstream's that the provider let through, redacted like
/// an error message, and the layers' own.
fn for_client(
    mut parts: http::response::Parts,
    body: GatewayBody,
    redactor: &Redactor,
) -> Response<GatewayBody> {
    if !parts.status.is_success() {
        parts.status = StatusCode::OK;
    }
    let headers = &mut parts.headers;
    // The gateway's body decides the length (a deadline may end it early):
    // hyper frames it from the body, never from a length declared below.
    headers.remove(CONTENT_LENGTH);
    // One well-known content type stays where it is; anything else is
    // redacted, or replaced by JSON's.
    let mut content_types = headers.get_all(CONTENT_TYPE).iter();
    let well_known =
        content_types.next().is_some_and(well_known_media_type) && content_types.next().is_none();
    if !well_known {
        let content_type = headers
            .remove(CONTENT_TYPE)
            .and_then(|value| redactor.header(value))
            .unwrap_or(HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, content_type);
    }
    redact_rate_limits(headers, redactor);
    Response::from_parts(parts, body)
}

/// Whether a content type is one of the few an answer has, as written
/// (letter case aside): the text of a media type names no secret, so it is
/// passed on without the redactor's scan, which costs more than the rest
/// of the answer's headers. Anything else is scanned.
fn well_known_media_type(value: &HeaderValue) -> bool {
    const WELL_KNOWN: [&str; 4] = [
        "application/json",
        "application/json; charset=utf-8",
        "text/event-stream",
        "text/event-stream; charset=utf-8",
    ];
    let value = value.as_bytes();
    WELL_KNOWN
        .iter()
        .any(|known| value.eq_ignore_ascii_case(known.as_bytes()))
}

/// Redacts the `x-ratelimit-*` headers in place (an upstream's pass the
/// allow-list); one that cannot be made safe is dropped.
fn redact_rate_limits(headers: &mut http::HeaderMap, redactor: &Redactor) {
    let mut unsafe_names = Vec::new();
    for (name, value) in headers.iter_mut() {
        if !name.as_str().starts_with(RATE_LIMIT_PREFIX) {
            continue;
        }
        let upstream = std::mem::replace(value, HeaderValue::from_static(""));
        match redactor.header(upstream) {
            Some(redacted) => *value = redacted,
            None => unsafe_names.push(name.clone()),
        }
    }
    for name in unsafe_names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use tollgate_core::Secrets;

    use super::*;

    /// The content type `for_client` sends for an upstream's `content_type`.
    fn sent(content_type: &'static str, redactor: &Redactor) -> HeaderValue {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let response = for_client(parts, GatewayBody::full(""), redactor);
        response.headers()[CONTENT_TYPE].clone()
    }

    #[test]
    fn a_well_known_content_type_passes_and_any_other_is_redacted() {
        let redactor = Redactor::new(Secrets::from_iter(["sk-upstream-secret"]));
        for known in [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "text/event-stream",
        ] {
            assert_eq!(sent(known, &redactor), known);
        }
        let leaky = sent("application/json; sk-upstream-secret", &redactor);
        assert_eq!(leaky, "application/json; [redacted]");
    }

    #[test]
    fn a_second_content_type_is_not_passed_unscanned() {
        let redactor = Redactor::new(Secrets::from_iter(["sk-upstream-secret"]));
        let (mut parts, ()) = Response::new(()).into_parts();
        let headers = &mut parts.headers;
        headers.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.append(CONTENT_TYPE, HeaderValue::from_static("sk-upstream-secret"));
        let response = for_client(parts, GatewayBody::full(""), &redactor);
        let sent: Vec<_> = response.headers().get_all(CONTENT_TYPE).iter().collect();
        assert_eq!(sent, ["application/json"]);
        // No content type at all: JSON's.
        let (parts, ()) = Response::new(()).into_parts();
        let response = for_client(parts, GatewayBody::full(""), &redactor);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    }
}
