//! [`Facts`]: what an OpenRouter error object says, read once, and the
//! [`Failure`] it makes.

use super::*;

/// What the error object says, read once.
pub(super) struct Facts<'a> {
    pub(super) status: StatusCode,
    pub(super) error: Option<&'a Value>,
    pub(super) metadata: Option<&'a Value>,
    pub(super) typed: Option<String>,
    pub(super) message: &'a str,
    pub(super) text: String,
}

impl<'a> Facts<'a> {
    pub(super) fn read(http_status: StatusCode, body: Option<&'a Value>) -> Self {
        let error = body.and_then(find_error);
        let field = |name: &str| error.and_then(|e| e.get(name));
        let status = field("code")
            .and_then(status_from_code)
            .or_else(|| field("http_status").and_then(status_from_code))
            .or((!http_status.is_success()).then_some(http_status))
            // An error inside a 200 without a status: the provider failed.
            .unwrap_or(StatusCode::BAD_GATEWAY);
        let metadata = field("metadata").filter(|m| m.is_object());
        let typed = [
            metadata.and_then(|m| m.get("error_type")),
            field("error_type"),
            field("code").filter(|c| status_from_code(c).is_none()),
            field("type"),
        ]
        .into_iter()
        .flatten()
        .find_map(Value::as_str)
        .map(str::to_ascii_lowercase);
        let message = match error {
            Some(Value::String(s)) => s.as_str(),
            _ => field("message").and_then(Value::as_str).unwrap_or(""),
        };
        Facts {
            status,
            error,
            metadata,
            typed,
            message,
            text: message.to_ascii_lowercase(),
        }
    }

    pub(super) fn meta_str(&self, name: &str) -> Option<&'a str> {
        self.metadata?.get(name)?.as_str()
    }

    pub(super) fn provider_name(&self) -> Option<&'a str> {
        self.meta_str("provider_name")
    }

    pub(super) fn limit_source(&self) -> Option<&'a str> {
        self.meta_str("limit_source")
    }

    pub(super) fn availability(&self) -> Option<&'a Value> {
        self.error?.get("availability").filter(|a| a.is_object())
    }

    pub(super) fn says(&self, phrase: &str) -> bool {
        self.text.contains(phrase)
    }

    /// The class, and the subkind where one is known.
    pub(super) fn class(&self) -> (ErrorClass, Option<&'static str>) {
        let class = match self.typed.as_deref().and_then(typed_class) {
            // "Invalid request" is the least precise code there is: a
            // context-window error often comes as one.
            Some(ErrorClass::BadRequest) if self.context_window_text() => {
                ErrorClass::ContextWindowExceeded
            }
            Some(class) => class,
            None => self
                .availability_class()
                .unwrap_or_else(|| self.status_class()),
        };
        (class, self.subkind(class))
    }

    pub(super) fn availability_class(&self) -> Option<ErrorClass> {
        match self.availability()?.get("code")?.as_str()? {
            "temporarily_unavailable" => Some(ErrorClass::UpstreamUnavailable),
            "model_not_found" | "no_endpoints" | "free_variant_ended" | "privacy_restricted" => {
                Some(ErrorClass::ModelNotFound)
            }
            _ => None,
        }
    }

    pub(super) fn context_window_text(&self) -> bool {
        self.says("maximum context length")
            || self.says("context length")
            || self.says("context window")
    }

    pub(super) fn status_class(&self) -> ErrorClass {
        match self.status.as_u16() {
            400 | 413 | 422 if self.context_window_text() => ErrorClass::ContextWindowExceeded,
            400 | 422 if self.says("request blocked") => ErrorClass::ContentPolicy,
            401 => ErrorClass::Auth,
            402 => ErrorClass::InsufficientCredits,
            // OpenRouter's 403 is moderation, except for a key's spend cap.
            403 if self.says("key limit") => ErrorClass::InsufficientCredits,
            403 => ErrorClass::ContentPolicy,
            404 => ErrorClass::ModelNotFound,
            408 | 504 | 524 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimited,
            400..=499 => ErrorClass::BadRequest,
            _ => ErrorClass::UpstreamUnavailable,
        }
    }

    pub(super) fn subkind(&self, class: ErrorClass) -> Option<&'static str> {
        let limit_source = self.limit_source().unwrap_or("");
        match class {
            ErrorClass::RateLimited => {
                if self.says("free-models-per-day") || limit_source == "openrouter_free_tier_daily"
                {
                    Some("free_daily_quota")
                } else if self.says("free-models-per-min")
                    || (limit_source.starts_with("openrouter_free_tier")
                        && limit_source.contains("min"))
                {
                    Some("free_rpm")
                } else if self.says("high demand for")
                    || self.says("limit_rpm/")
                    || limit_source == "openrouter_shared_capacity"
                {
                    Some("model_capacity")
                } else if self.says("provider returned error")
                    || self.provider_name().is_some()
                    || self
                        .metadata
                        .is_some_and(|m| m.get("provider_code").is_some())
                    || self.meta_str("raw").is_some_and(|raw| {
                        raw.to_ascii_lowercase().contains("rate-limited upstream")
                    })
                {
                    Some("upstream_provider")
                } else {
                    None
                }
            }
            ErrorClass::UpstreamUnavailable => {
                if self.availability().is_some() || self.status == StatusCode::SERVICE_UNAVAILABLE {
                    Some("no_provider")
                } else if self.status == StatusCode::INTERNAL_SERVER_ERROR {
                    Some("server_error")
                } else {
                    Some("provider_error")
                }
            }
            ErrorClass::InsufficientCredits => Some(if self.says("key limit") {
                "key_limit"
            } else {
                "balance"
            }),
            ErrorClass::ContentPolicy => Some(match self.typed.as_deref() {
                Some("permission_denied") => "permission",
                Some("refusal") => "refusal",
                _ if self.says("request blocked") => "guardrail",
                _ => "moderation",
            }),
            ErrorClass::ModelNotFound => Some(
                match self
                    .availability()
                    .and_then(|a| a.get("code"))
                    .and_then(Value::as_str)
                {
                    Some("free_variant_ended") => "free_variant_ended",
                    Some("privacy_restricted") => "privacy_restricted",
                    _ if self.says("no endpoints found") || self.says("no allowed providers") => {
                        "no_endpoints"
                    }
                    _ => "not_found",
                },
            ),
            _ => None,
        }
    }

    /// OpenRouter's message, sanitised, when it is about the client's request
    /// and not a provider's pass-through.
    pub(super) fn request_message(&self, fallback: &'static str) -> std::borrow::Cow<'static, str> {
        if self.message.trim().is_empty() || self.says("provider returned error") {
            fallback.into()
        } else {
            sanitize_message(self.message).into()
        }
    }

    pub(super) fn moderation_message(&self) -> String {
        let reasons: Vec<&str> = self
            .metadata
            .and_then(|m| m.get("reasons"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            // Category labels only ("violence", "self-harm/intent").
            .filter(|r| {
                !r.is_empty()
                    && r.len() <= 40
                    && r.bytes()
                        .all(|b| b.is_ascii_lowercase() || b"_-/ ".contains(&b))
            })
            .take(5)
            .collect();
        if reasons.is_empty() {
            "the input was flagged by the upstream's moderation".to_owned()
        } else {
            format!(
                "the input was flagged by the upstream's moderation ({})",
                reasons.join(", ")
            )
        }
    }

    pub(super) fn failure(&self, class: ErrorClass, subkind: Option<&'static str>) -> Failure {
        let mut failure = match (class, subkind) {
            (ErrorClass::RateLimited, Some("free_daily_quota")) => Failure::new(
                class,
                "the upstream account's daily request limit for free models is exhausted",
            )
            .with_scope(Scope::AccountFreePool)
            // Not before the reset at 00:00 UTC, and not on another free model.
            .with_retryable(false)
            .with_fallback_eligible(false),
            (ErrorClass::RateLimited, Some("free_rpm")) => Failure::new(
                class,
                "the upstream account's per-minute request limit for free models is exhausted",
            )
            .with_scope(Scope::AccountFreePool)
            .with_fallback_eligible(false),
            (ErrorClass::RateLimited, Some("model_capacity")) => {
                Failure::new(class, "the upstream model is at capacity").with_scope(Scope::Model)
            }
            (ErrorClass::RateLimited, Some("upstream_provider")) => {
                Failure::new(class, "the upstream provider is rate limiting requests")
                    .with_scope(Scope::Provider)
            }
            (ErrorClass::RateLimited, _) => {
                Failure::new(class, "the upstream is rate limiting requests")
            }
            (ErrorClass::UpstreamUnavailable, Some("no_provider")) => {
                Failure::new(class, "no upstream provider is available for the model")
                    .with_scope(Scope::Model)
            }
            (ErrorClass::UpstreamUnavailable, Some("provider_error")) => {
                Failure::new(class, "the upstream provider failed").with_scope(Scope::Provider)
            }
            (ErrorClass::Timeout, _) => Failure::timeout(TimeoutKind::Total)
                .with_subkind("upstream_reported")
                .with_scope(Scope::Provider),
            (ErrorClass::Auth, _) => {
                Failure::new(class, "the upstream rejected the gateway's credentials")
                    .with_scope(Scope::Key)
                    // The client's own key was fine: this is the gateway's
                    // problem, and the same key serves every OpenRouter model.
                    .with_status(StatusCode::BAD_GATEWAY)
                    .with_code("upstream_auth_failed")
                    .with_fallback_eligible(false)
            }
            (ErrorClass::InsufficientCredits, Some("key_limit")) => {
                Failure::new(class, "the upstream key's spending limit is exhausted")
                    .with_scope(Scope::Key)
            }
            (ErrorClass::InsufficientCredits, _) => {
                Failure::new(class, "the upstream account has insufficient credits")
                    .with_scope(Scope::Account)
            }
            (ErrorClass::ContentPolicy, Some("moderation")) => {
                Failure::new(class, self.moderation_message())
                    .with_scope(Scope::Model)
                    // Only moderated endpoints flag: another model may answer.
                    .with_fallback_eligible(true)
            }
            (ErrorClass::ContentPolicy, Some("guardrail")) => Failure::new(
                class,
                "the request was blocked by the upstream account's guardrail policy",
            ),
            (ErrorClass::ContentPolicy, _) => {
                Failure::new(class, "the upstream refused the request").with_scope(Scope::Model)
            }
            (ErrorClass::ContextWindowExceeded, _) => Failure::new(
                class,
                self.request_message("the request does not fit the model's context window"),
            )
            .with_scope(Scope::Model)
            .with_param("messages"),
            (ErrorClass::ModelNotFound, _) => Failure::new(
                class,
                self.request_message("the model is not available upstream"),
            )
            .with_scope(Scope::Model),
            (ErrorClass::BadRequest, _) => Failure::new(
                class,
                self.request_message("the upstream rejected the request"),
            )
            .with_scope(Scope::Request),
            (ErrorClass::StreamInterrupted, _) => {
                Failure::new(class, "the upstream stream was interrupted")
            }
            _ => Failure::new(
                class,
                format!("the upstream failed with status {}", self.status.as_u16()),
            ),
        };
        if let Some(subkind) = subkind {
            failure = failure.with_subkind(subkind);
        }
        if let Some(retryable) = self
            .availability()
            .and_then(|a| a.get("retryable"))
            .and_then(Value::as_bool)
        {
            failure = failure.with_retryable(retryable);
        }
        failure.with_upstream_status(self.status)
    }
}
