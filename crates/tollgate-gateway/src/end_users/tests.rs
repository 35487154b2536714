//! Tests of [`super`]: the registry, its file, and the requests' limits.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tollgate_limits::{Budget, KeyLimits, SharedLimits};

use super::record::LIMITS_PREFIX;
use super::{Change, EndUsers};
use crate::temp_dir::TempDir;

const NOW: i64 = 1_700_000_000_000;

fn change(body: &str) -> Change {
    Change::from_json(body.as_bytes()).expect("a valid change")
}

fn body(failure: &tollgate_core::Failure) -> String {
    String::from_utf8(failure.to_openai_body().to_vec()).unwrap()
}

#[tokio::test]
async fn an_unregistered_end_user_has_the_default_budget_only() {
    let open = EndUsers::in_memory(None);
    assert_eq!(open.admit("alice", NOW).await.unwrap(), None);

    let dollars = EndUsers::in_memory(Some(Budget::dollars(2)));
    let limits = dollars
        .admit("alice", NOW)
        .await
        .unwrap()
        .expect("a budget");
    assert_eq!(&*limits.name, "end_user:alice");
    assert_eq!(
        limits.max_budget,
        Some(Budget::lifetime(Budget::dollars(2)))
    );
    assert_eq!(
        (limits.rpm, limits.tpm, limits.max_parallel),
        (None, None, None)
    );
}

#[tokio::test]
async fn a_registered_end_user_has_their_own_limits_and_budget() {
    let users = EndUsers::in_memory(Some(Budget::dollars(2)));
    let made = users
        .create(
            &change(
                r#"{"user_id":"bob","alias":"Bob","rpm_limit":3,"tpm_limit":"900",
                    "max_parallel_requests":2,"max_budget":0.25,"budget_duration":"1d",
                    "soft_budget":1,"metadata":{"tier":"free"}}"#,
            ),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(made.alias.as_deref(), Some("Bob"));
    let limits = users.admit("bob", NOW).await.unwrap().unwrap();
    assert_eq!(limits.rpm, Some(3));
    assert_eq!(limits.tpm, Some(900));
    assert_eq!(limits.max_parallel, Some(2));
    // Their own budget replaces the default, exactly: 0.25 $.
    assert_eq!(
        limits.max_budget,
        Some(Budget::per(250_000_000_000, Duration::from_secs(86_400)))
    );
    // Registering twice is a 400; an update changes only what it names.
    let again = users
        .create(&change(r#"{"user_id":"bob"}"#), NOW)
        .await
        .unwrap_err();
    assert!(body(&again).contains("already exists"), "{}", body(&again));
    users
        .update(&change(r#"{"user_id":"bob","rpm_limit":5}"#), NOW + 1)
        .await
        .unwrap();
    let limits = users.admit("bob", NOW + 1).await.unwrap().unwrap();
    assert_eq!((limits.rpm, limits.tpm), (Some(5), Some(900)));
    let missing = users
        .update(&change(r#"{"user_id":"nobody"}"#), NOW)
        .await
        .unwrap_err();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_blocked_end_user_is_refused_with_a_403_until_unblocked() {
    let users = EndUsers::in_memory(None);
    // Blocking registers an end user not registered yet.
    let blocked = users
        .set_blocked(&["carol".into()], true, NOW)
        .await
        .unwrap();
    assert_eq!(blocked.len(), 1);
    let refused = users.admit("carol", NOW).await.unwrap_err();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(body(&refused).contains(r#""code":"end_user_blocked""#));
    assert!(body(&refused).contains("carol"));
    users
        .set_blocked(&["carol".into()], false, NOW + 1)
        .await
        .unwrap();
    assert_eq!(users.admit("carol", NOW + 1).await.unwrap(), None);
}

#[tokio::test]
async fn deleting_takes_all_or_none_and_leaves_the_default() {
    let users = EndUsers::in_memory(Some(7));
    users
        .create(&change(r#"{"user_id":"dan","rpm_limit":1}"#), NOW)
        .await
        .unwrap();
    let refused = users
        .delete(&["dan".into(), "eve".into()], NOW)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert!(users.current("dan", NOW).await.is_some(), "nothing deleted");
    assert_eq!(users.delete(&["dan".into()], NOW + 1).await.unwrap(), 1);
    assert!(users.current("dan", NOW + 1).await.is_none());
    let limits = users.admit("dan", NOW + 1).await.unwrap().unwrap();
    assert_eq!(
        (limits.rpm, limits.max_budget),
        (None, Some(Budget::lifetime(7)))
    );
    // And registering again after the deletion works.
    users
        .create(&change(r#"{"user_id":"dan"}"#), NOW + 2)
        .await
        .unwrap();
    assert_eq!(users.list(NOW + 2).await.len(), 1);
}

#[test]
fn changes_refuse_what_tollgate_does_not_enforce() {
    for (text, param) in [
        (r#"{"user_id":"a","budget_id":"free_tier"}"#, "budget_id"),
        (
            r#"{"user_id":"a","allowed_model_region":"eu"}"#,
            "allowed_model_region",
        ),
        (r#"{"user_id":"a","spend":3}"#, "spend"),
        (r#"{"user_id":"a","rpm_limit":-1}"#, "rpm_limit"),
        (r#"{"user_id":"a","max_budget":"lots"}"#, "max_budget"),
        (r#"{"alias":"no id"}"#, "user_id"),
    ] {
        let refused = Change::from_json(text.as_bytes()).unwrap_err();
        assert!(
            body(&refused).contains(&format!(r#""param":"{param}""#)),
            "{text}: {}",
            body(&refused)
        );
    }
    // What has no effect on requests is accepted, and nulls are "not given".
    let change = change(r#"{"user_id":"a","spend":0,"max_budget":null,"default_model":null}"#);
    assert_eq!(change.max_budget_picos, None);
}

#[tokio::test]
async fn end_users_and_deletions_survive_a_restart() {
    let dir = TempDir::new("end-users-restart");
    let path = dir.file();
    let open = || EndUsers::open(Some(&path), None, Duration::from_millis(100), None).unwrap();
    let first = open();
    first
        .create(&change(r#"{"user_id":"fay","rpm_limit":4}"#), NOW)
        .await
        .unwrap();
    first
        .create(&change(r#"{"user_id":"gus"}"#), NOW)
        .await
        .unwrap();
    first.delete(&["gus".into()], NOW + 1).await.unwrap();
    drop(first);
    let second = open();
    let fay = second.current("fay", NOW + 2).await.expect("kept");
    assert_eq!(fay.rpm_limit, Some(4));
    assert!(
        second.current("gus", NOW + 2).await.is_none(),
        "still deleted"
    );
    let listed: Vec<String> = second
        .list(NOW + 2)
        .await
        .iter()
        .map(|r| r.user_id.clone())
        .collect();
    assert_eq!(listed, ["fay"]);
}

#[tokio::test]
async fn a_request_gets_the_end_user_beside_the_limits_already_there() {
    let users = EndUsers::in_memory(Some(5));
    let mut extensions = http::Extensions::new();
    let team = Arc::new(KeyLimits::new("team:search").rpm(100));
    extensions.insert(Arc::new(SharedLimits(vec![team.clone()])));
    users
        .admit_request(&mut extensions, Arc::from("hal"), NOW)
        .await
        .unwrap();
    let shared = extensions.get::<Arc<SharedLimits>>().unwrap();
    assert_eq!(shared.0.len(), 2);
    assert_eq!(shared.0[0], team);
    assert_eq!(&*shared.0[1].name, &*format!("{LIMITS_PREFIX}hal"));
    assert_eq!(
        extensions
            .get::<tollgate_core::extensions::EndUser>()
            .map(|u| &*u.0),
        Some("hal")
    );
}

/// A budget per `budget_duration` resets when its window ends (an injected
/// clock), and what was spent in the current window comes back from the
/// ledger after a restart.
#[tokio::test]
async fn a_budget_resets_on_its_duration_and_its_spend_survives_a_restart() {
    use crate::ledger::{CostSource, Ledger, LedgerConfig, LedgerRow, Outcome};
    use tollgate_core::time::ManualClock;
    use tollgate_limits::{MemoryStore, RateLimitLayer, Store};
    use tower::{Layer, ServiceExt, service_fn};

    const DAY: i64 = 86_400_000;
    let start = NOW - NOW.rem_euclid(DAY);
    let dir = TempDir::new("end-users-budget-window");
    let ledger = Ledger::open(LedgerConfig::new(dir.file())).unwrap();
    let users = EndUsers::open(Some(&dir.file()), None, Duration::from_millis(100), None).unwrap();
    users
        .create(
            &change(r#"{"user_id":"ivy","max_budget":0.00001,"budget_duration":"1d"}"#),
            start,
        )
        .await
        .unwrap();
    // $0.00001 spent an hour into the day: the whole budget.
    let row = LedgerRow {
        request_id: "r1".into(),
        attempt: 1,
        ts_ms: start + 3_600_000,
        key: None,
        team: None,
        end_user: Some("ivy".into()),
        model_group: Some("gpt".into()),
        deployment: Some("gpt-1".into()),
        upstream_model: None,
        stream: false,
        outcome: Outcome::Success,
        error_class: None,
        prompt_tokens: 10,
        completion_tokens: 0,
        cached_prompt_tokens: 0,
        reasoning_tokens: 0,
        usage_estimated: false,
        cost_picos: Some(10_000_000),
        cost_source: CostSource::PriceTable,
    };
    ledger.handle().record(row);
    let flushing = Arc::new(ledger);
    let flushed = flushing.clone();
    tokio::task::spawn_blocking(move || flushed.flush())
        .await
        .unwrap()
        .unwrap();

    // A new process: an empty store, the spend brought back.
    let now = start + 7_200_000;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    users.restore_budgets(&flushing, &*store, now).await;
    let clock = Arc::new(ManualClock::new(now));
    let service = RateLimitLayer::new(store)
        .clock(clock.clone())
        .layer(service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
    let request = || async {
        let mut request = http::Request::new(());
        users
            .admit_request(request.extensions_mut(), Arc::from("ivy"), NOW)
            .await
            .unwrap();
        request
    };
    let refused = service.clone().oneshot(request().await).await.unwrap_err();
    let failure = tollgate_core::Failure::from_error(&*refused);
    assert_eq!(failure.class(), tollgate_core::ErrorClass::BudgetExceeded);
    // The next day's window starts empty.
    clock.set(start + DAY + 1);
    assert!(service.oneshot(request().await).await.is_ok());
}
