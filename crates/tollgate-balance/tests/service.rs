//! The `Balance` service alone, over a `service_fn`: what it puts in the
//! request, how it reads availability, and what a rejection by an open
//! deployment becomes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tollgate_balance::{Balance, Group, GroupMember, Groups, MemberConfig, Strategy};
use tollgate_core::extensions::{ModelGroup, Target, TriedDeployments};
use tollgate_core::{Availability, BoxError, ErrorClass, Failure, Unlimited};
use tower::{Service, ServiceExt, service_fn};

/// Deployments named open are open; a `Rejected` error is their rejection.
#[derive(Clone, Default)]
struct Open(Arc<Mutex<HashSet<String>>>);

#[derive(Debug)]
struct Rejected;

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rejected by an open breaker")
    }
}

impl std::error::Error for Rejected {}

impl Availability for Open {
    fn is_open(&self, deployment: &str) -> bool {
        self.0.lock().unwrap().contains(deployment)
    }

    fn next_probe_in(&self, deployment: &str) -> Option<Duration> {
        self.is_open(deployment).then_some(Duration::from_secs(7))
    }

    fn rejection(error: &BoxError) -> Option<Failure> {
        error.is::<Rejected>().then(|| {
            Failure::new(ErrorClass::UpstreamUnavailable, "open")
                .with_retry_after(Duration::from_secs(7))
        })
    }
}

fn groups(ids: &[&str]) -> Groups<&'static str> {
    let members = ids
        .iter()
        .map(|id| GroupMember {
            target: Target {
                model_group: Arc::from("g"),
                deployment_id: Arc::from(*id),
                upstream_model: Arc::from("m"),
            },
            config: MemberConfig::new(*id),
            extension: "reached",
        })
        .collect();
    let group = Group::new(
        Arc::from("g"),
        Strategy::SimpleShuffle,
        members,
        Arc::new(Unlimited),
    );
    Arc::new([(Arc::from("g"), Arc::new(group))].into_iter().collect())
}

fn request() -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::new()));
    request.extensions_mut().insert(ModelGroup(Arc::from("g")));
    request
}

/// Attempts of one request, as a retry layer sends them: clones sharing
/// what they tried.
fn attempt(tried: &TriedDeployments) -> Request<Full<Bytes>> {
    let mut request = request();
    request.extensions_mut().insert(tried.clone());
    request
}

/// Answers with the deployment it was sent to; `Rejected` for those in
/// `rejecting`.
fn upstream(
    rejecting: &'static [&'static str],
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<String>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<String>, BoxError>> + Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |request: Request<Full<Bytes>>| async move {
        let target = request.extensions().get::<Target>().expect("a target");
        assert_eq!(request.extensions().get::<&str>(), Some(&"reached"));
        let id = target.deployment_id.to_string();
        if rejecting.contains(&id.as_str()) {
            return Err(BoxError::from(Rejected));
        }
        Ok(Response::new(id))
    })
}

#[tokio::test]
async fn open_deployments_are_left_out_and_the_answer_names_its_target() {
    let open = Open::default();
    open.0.lock().unwrap().insert("a".into());
    let mut balance = Balance::new(upstream(&[]), open.clone(), groups(&["a", "b"]));
    for _ in 0..4 {
        let response = balance
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
        assert_eq!(response.body(), "b");
        let target = response.extensions().get::<Target>().unwrap();
        assert_eq!(&*target.deployment_id, "b");
    }
    let group = groups(&["a", "b"]);
    assert!(group["g"].available(&open));
    open.0.lock().unwrap().insert("b".into());
    assert!(!group["g"].available(&open));
    assert_eq!(
        group["g"].next_probe_in(&open),
        Some(Duration::from_secs(7))
    );
}

#[tokio::test]
async fn a_retry_goes_to_a_deployment_not_tried() {
    let balance = Balance::new(upstream(&[]), Open::default(), groups(&["a", "b"]));
    for _ in 0..4 {
        // Each request on a fresh clone of the service: what was tried
        // travels with the request, not in the service.
        let tried = TriedDeployments::default();
        let first = balance.clone().oneshot(attempt(&tried)).await.unwrap();
        let retry = balance.clone().oneshot(attempt(&tried)).await.unwrap();
        assert_ne!(first.body(), retry.body(), "the retry left the first");
        assert_eq!(tried.mask(), 0b11);
    }
}

#[tokio::test]
async fn a_rejection_with_every_deployment_open_fails_fast() {
    let open = Open::default();
    open.0.lock().unwrap().extend(["a".into(), "b".into()]);
    let balance = Balance::new(upstream(&["a", "b"]), open, groups(&["a", "b"]));
    let error = balance.oneshot(request()).await.unwrap_err();
    let failure = Failure::from_error(&*error);
    assert!(!failure.is_retryable(), "nothing else to try: no retry");
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn a_rejection_with_alternatives_is_an_ordinary_retryable_failure() {
    // `a` rejects although it is not known to be open (a half-open breaker
    // whose probes are out): another deployment may take the retry.
    let balance = Balance::new(upstream(&["a"]), Open::default(), groups(&["a", "b"]));
    let error = balance.oneshot(request()).await.unwrap_err();
    let failure = Failure::from_error(&*error);
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert!(failure.is_retryable());
    assert_eq!(failure.retry_after(), None);
}

#[tokio::test]
async fn a_request_for_no_known_group_fails() {
    let balance = Balance::new(upstream(&[]), Open::default(), groups(&["a"]));
    let mut request = request();
    request
        .extensions_mut()
        .insert(ModelGroup(Arc::from("other")));
    let error = balance.oneshot(request).await.unwrap_err();
    assert_eq!(Failure::from_error(&*error).class(), ErrorClass::Internal);
}
