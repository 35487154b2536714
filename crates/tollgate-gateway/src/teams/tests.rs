//! A team's admission through the real rate-limit layer, on an injected
//! clock: the team's budget is shared by its keys and comes back at the end
//! of its `budget_duration`; the stricter of key and team wins.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tollgate_core::extensions::{AllowedGroups, TeamId, UsageReport};
use tollgate_core::time::ManualClock;
use tollgate_limits::{Budget, Limit, MemoryStore, RateLimitLayer, RateLimited};
use tower::{Layer, ServiceExt, service_fn};

use super::{TeamBackend, TeamRequest, Teams, admit};
use crate::key_format::sha256;
use crate::keys::{KeySource, Principal, VirtualKey};

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000;

fn member(name: &str, team: &str) -> Principal {
    let mut key = VirtualKey::new(
        sha256(name.as_bytes()),
        Some(name.to_owned()),
        KeySource::Generated,
        T0,
    );
    key.team_id = Some(team.to_owned());
    Principal::Virtual(Arc::new(key))
}

async fn team(teams: &Teams, body: &str) {
    let request = TeamRequest::from_json(body.as_bytes()).unwrap();
    teams.create(request, T0).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_team_budget_is_shared_by_its_keys_and_resets_on_its_duration() {
    let teams = Teams::new(TeamBackend::Memory).unwrap();
    team(
        &teams,
        r#"{"team_id":"t","max_budget":2,"budget_duration":"1d"}"#,
    )
    .await;
    let clock = Arc::new(ManualClock::new(T0));
    // Each call costs $1, reported as the cost layer would.
    let upstream = service_fn(|request: Request<()>| async move {
        if let Some(report) = request.extensions().get::<Arc<UsageReport>>() {
            report.add_picos(Budget::dollars(1));
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let service = RateLimitLayer::new(Arc::new(MemoryStore::new()))
        .clock(clock.clone())
        .layer(upstream);
    let send = |principal: Principal| {
        let (teams, service) = (teams.clone(), service.clone());
        async move {
            let admission = admit(&teams, &principal, "gpt", T0).await.unwrap().unwrap();
            let mut request = Request::new(());
            admission.apply(request.extensions_mut());
            let response = service.oneshot(request).await?;
            // The spend is charged when the body ends.
            response.into_body().collect().await?;
            Ok::<_, tollgate_core::BoxError>(())
        }
    };
    send(member("a", "t")).await.unwrap();
    send(member("b", "t")).await.unwrap();
    // $2 of $2 spent by two keys: both are refused, naming the team.
    for key in ["a", "b"] {
        let error = send(member(key, "t")).await.unwrap_err();
        let refused = RateLimited::find(&*error).unwrap();
        assert_eq!(refused.limit(), Limit::Budget);
        assert_eq!(refused.key(), "team:t");
    }
    // The next day window gives the team its budget back.
    clock.advance(Duration::from_millis(DAY_MS as u64));
    send(member("a", "t")).await.unwrap();
}

#[tokio::test]
async fn admission_refuses_blocked_missing_and_other_models_and_narrows_fallbacks() {
    let teams = Teams::new(TeamBackend::Memory).unwrap();
    team(&teams, r#"{"team_id":"t","models":["gpt","mini"]}"#).await;
    let refusal = |result: Result<Option<super::Admission>, tollgate_core::Failure>| {
        let failure = result.unwrap_err();
        let body = String::from_utf8_lossy(&failure.to_openai_body()).into_owned();
        (failure.status().as_u16(), body)
    };
    let (status, body) = refusal(admit(&teams, &member("k", "t"), "other", T0).await);
    assert_eq!(status, 403);
    assert!(body.contains("model_not_allowed"), "{body}");
    let (status, body) = refusal(admit(&teams, &member("k", "gone"), "gpt", T0).await);
    assert_eq!(status, 403);
    assert!(body.contains("team_not_found"), "{body}");

    // The key may use gpt and other; the team gpt and mini: a fallback
    // may answer with gpt alone.
    let admission = admit(&teams, &member("k", "t"), "gpt", T0)
        .await
        .unwrap()
        .unwrap();
    let mut extensions = http::Extensions::new();
    extensions.insert(AllowedGroups(Arc::from(vec![
        Arc::from("gpt"),
        Arc::from("other"),
    ])));
    admission.apply(&mut extensions);
    let allowed = extensions.get::<AllowedGroups>().unwrap();
    assert!(allowed.allows("gpt") && !allowed.allows("other") && !allowed.allows("mini"));
    assert_eq!(extensions.get::<TeamId>().unwrap().0.as_ref(), "t");

    let blocked = TeamRequest {
        blocked: Some(true),
        ..TeamRequest::default()
    };
    teams.update("t", blocked, "team.block", T0).await.unwrap();
    let (_, body) = refusal(admit(&teams, &member("k", "t"), "gpt", T0).await);
    assert!(body.contains("team_blocked"), "{body}");
    // No team, nothing to check.
    assert!(
        admit(&teams, &Principal::Master, "gpt", T0)
            .await
            .unwrap()
            .is_none()
    );
}
