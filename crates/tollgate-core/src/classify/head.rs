//! [`Classified`]: a response head's verdict, given once and carried up
//! the stack as a response extension.

use std::fmt;
use std::marker::PhantomData;

use http::{Response, StatusCode};

use super::{ClassifyResponse, Verdict};
use crate::failure::Failure;

/// The verdict a classifier of type `C` gave on a response's head, left in
/// the response's extensions by the first layer that asked (the innermost)
/// for the layers above it that ask the same type of classifier: retry,
/// breaker, fallback and cost read it instead of classifying the head
/// again.
///
/// It holds only for the head it was given on: a layer in between that
/// changes the status makes it stale, and it is then ignored (and the head
/// classified again). A layer that changes the headers of an error
/// response should remove it.
pub struct Classified<C> {
    status: StatusCode,
    head: Head,
    _classifier: PhantomData<fn() -> C>,
}

#[derive(Debug, Clone)]
enum Head {
    Success,
    Failure(Failure),
    Watch,
}

impl<C> Clone for Classified<C> {
    fn clone(&self) -> Self {
        Classified {
            status: self.status,
            head: self.head.clone(),
            _classifier: PhantomData,
        }
    }
}

impl<C> fmt::Debug for Classified<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classified")
            .field("status", &self.status)
            .field("head", &self.head)
            .finish()
    }
}

impl<C: ClassifyResponse> Classified<C> {
    /// The verdict of `classifier` on `response`: the one a layer below
    /// left, else given here.
    pub fn verdict<B>(classifier: &C, response: &Response<B>) -> Verdict<C::Eos> {
        match response.extensions().get::<Classified<C>>() {
            Some(given) if given.status == response.status() => match &given.head {
                Head::Success => Verdict::Success,
                Head::Failure(failure) => Verdict::Failure(failure.clone()),
                Head::Watch => classifier
                    .watch(response)
                    .map_or(Verdict::Success, Verdict::Watch),
            },
            _ => classifier.classify_response(response),
        }
    }

    /// As [`verdict`](Self::verdict), and when this is the first layer to
    /// classify the head, leaves the verdict in the response for the layers
    /// above.
    pub fn once<B>(classifier: &C, response: &mut Response<B>) -> Verdict<C::Eos> {
        if let Some(given) = response.extensions().get::<Classified<C>>()
            && given.status == response.status()
        {
            return Classified::verdict(classifier, response);
        }
        let verdict = classifier.classify_response(response);
        let head = match &verdict {
            Verdict::Success => Head::Success,
            Verdict::Failure(failure) => Head::Failure(failure.clone()),
            Verdict::Watch(_) => Head::Watch,
        };
        let status = response.status();
        response.extensions_mut().insert(Classified::<C> {
            status,
            head,
            _classifier: PhantomData,
        });
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;
    use crate::classify::OpenAiClassifier;

    /// Counts the heads it classifies.
    #[derive(Clone, Default)]
    struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl ClassifyResponse for Counting {
        type Eos = crate::classify::OpenAiEos;

        fn classify_response<B>(&self, response: &Response<B>) -> Verdict<Self::Eos> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            OpenAiClassifier::new().classify_response(response)
        }

        fn classify_error_body(
            &self,
            status: StatusCode,
            headers: &http::HeaderMap,
            body: &[u8],
        ) -> Failure {
            OpenAiClassifier::new().classify_error_body(status, headers, body)
        }

        fn watch<B>(&self, _response: &Response<B>) -> Option<Self::Eos> {
            Some(Default::default())
        }
    }

    fn stream() -> Response<()> {
        Response::builder()
            .header(http::header::CONTENT_TYPE, "text/event-stream")
            .body(())
            .unwrap()
    }

    #[test]
    fn a_head_is_classified_once_per_classifier_type() {
        let counting = Counting::default();
        let mut response = stream();
        assert!(matches!(
            Classified::once(&counting, &mut response),
            Verdict::Watch(_)
        ));
        for _ in 0..3 {
            assert!(matches!(
                Classified::once(&counting, &mut response),
                Verdict::Watch(_)
            ));
            assert!(matches!(
                Classified::verdict(&counting, &response),
                Verdict::Watch(_)
            ));
        }
        assert_eq!(counting.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Another type of classifier gives its own.
        assert!(
            response
                .extensions()
                .get::<Classified<OpenAiClassifier>>()
                .is_none()
        );
        Classified::once(&OpenAiClassifier::new(), &mut response);
        assert!(
            response
                .extensions()
                .get::<Classified<OpenAiClassifier>>()
                .is_some()
        );
    }

    #[test]
    fn a_changed_status_is_classified_again() {
        let counting = Counting::default();
        let mut response = stream();
        Classified::once(&counting, &mut response);
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        let Verdict::Failure(failure) = Classified::once(&counting, &mut response) else {
            panic!("a 429 is a failure");
        };
        assert_eq!(failure.class(), ErrorClass::RateLimited);
        assert_eq!(counting.0.load(std::sync::atomic::Ordering::Relaxed), 2);
        let Verdict::Failure(again) = Classified::verdict(&counting, &response) else {
            panic!("a 429 is a failure");
        };
        assert_eq!(again.class(), ErrorClass::RateLimited);
        assert_eq!(counting.0.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
