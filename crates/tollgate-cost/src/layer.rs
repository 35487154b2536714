//! [`CostLayer`]: the layer.

use std::fmt;
use std::sync::Arc;

use tollgate_core::classify::OpenAiClassifier;
use tower_layer::Layer;

use crate::meter::Shared;
use crate::price::PriceTable;
use crate::service::Cost;
use crate::sink::CostSink;

/// Records what every call of a service costs, into a [`CostSink`].
///
/// The prices and the sink are shared by every service the layer makes
/// (`layer()` creates no state), and cloning the layer is cheap.
/// [`replace_prices`](Self::replace_prices) swaps the price table for all
/// of them at once (after fetching OpenRouter's model list, say).
///
/// `C` classifies outcomes ([`OpenAiClassifier`] by default; an OpenRouter
/// stack passes its own classifier, so that failures inside 200s and streams
/// are seen the same way as by the other layers).
pub struct CostLayer<C = OpenAiClassifier> {
    shared: Arc<Shared>,
    classifier: C,
    body_limit: usize,
    include_usage: bool,
}

impl CostLayer {
    /// The default bound on a complete (non-streaming) response body the
    /// layer reads to find its usage: 16 MiB.
    pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

    /// Prices calls with `prices` and hands each record to `sink`.
    pub fn new(prices: Arc<PriceTable>, sink: impl CostSink) -> Self {
        CostLayer {
            shared: Arc::new(Shared::new(prices, Arc::new(sink))),
            classifier: OpenAiClassifier::new(),
            body_limit: CostLayer::DEFAULT_BODY_LIMIT,
            include_usage: true,
        }
    }
}

impl<C> CostLayer<C> {
    /// Reads complete response bodies up to `bytes` (default
    /// [`DEFAULT_BODY_LIMIT`](CostLayer::DEFAULT_BODY_LIMIT)). A larger
    /// body passes through as it comes, without the cost header, and its
    /// usage is recorded as unknown.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Whether to ask upstreams for `stream_options.include_usage` when the
    /// client did not (default: yes; the extra usage chunk is removed from
    /// the client's stream). Turn it off for an upstream that refuses
    /// `stream_options`: its streams are then recorded with the usage they
    /// carry anyway, or an estimate.
    pub fn include_usage(mut self, ask: bool) -> Self {
        self.include_usage = ask;
        self
    }

    /// Classifies outcomes with `classifier` instead.
    pub fn classifier<C2>(self, classifier: C2) -> CostLayer<C2> {
        CostLayer {
            shared: self.shared,
            classifier,
            body_limit: self.body_limit,
            include_usage: self.include_usage,
        }
    }

    /// The current price table.
    pub fn prices(&self) -> Arc<PriceTable> {
        self.shared.prices.load_full()
    }

    /// Prices calls with `prices` from now on, in every service this layer
    /// made or will make: a record made after the swap uses the new table,
    /// calls in flight included.
    pub fn replace_prices(&self, prices: Arc<PriceTable>) {
        self.shared.prices.store(prices);
    }
}

impl<S, C: Clone> Layer<S> for CostLayer<C> {
    type Service = Cost<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Cost::new(
            inner,
            self.shared.clone(),
            self.classifier.clone(),
            self.body_limit,
            self.include_usage,
        )
    }
}

impl<C: Clone> Clone for CostLayer<C> {
    fn clone(&self) -> Self {
        CostLayer {
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            body_limit: self.body_limit,
            include_usage: self.include_usage,
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for CostLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostLayer")
            .field("shared", &self.shared)
            .field("classifier", &self.classifier)
            .field("body_limit", &self.body_limit)
            .field("include_usage", &self.include_usage)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use tollgate_core::classify::OpenAiEos;
    use tollgate_core::{BoxError, RequestBody};

    use crate::{CostLayer, PriceTable, ResponseBody, ResponseFuture};

    #[test]
    fn services_futures_and_bodies_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<CostLayer>();
        send_sync::<ResponseBody<Full<Bytes>, OpenAiEos>>();
        type Future = std::future::Ready<Result<Response<Full<Bytes>>, BoxError>>;
        send_sync::<ResponseFuture<Future, Full<Bytes>, tollgate_core::classify::OpenAiClassifier>>(
        );
        let layer = CostLayer::new(std::sync::Arc::new(PriceTable::empty()), |_| {});
        let service = tower_layer::Layer::layer(
            &layer,
            tower::service_fn(|_: Request<RequestBody>| async {
                Ok::<_, BoxError>(Response::new(Full::new(Bytes::new())))
            }),
        );
        send(&service);
    }
}
