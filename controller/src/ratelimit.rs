//! Client-side QPS/burst limit on Kubernetes API requests (a token bucket,
//! like client-go's), and the request counter behind the
//! `coffer_kube_api_requests` metric.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tower::{Layer, Service};

/// A token bucket shared by every clone of the service.
#[derive(Debug)]
pub struct Bucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// `qps <= 0` means no limit.
    pub fn new(qps: f64, burst: u32) -> Arc<Self> {
        let burst = f64::from(burst.max(1));
        Arc::new(Bucket {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        })
    }

    /// Takes one token, returning how long to wait for it.
    fn take(&self) -> Duration {
        if self.qps <= 0.0 {
            return Duration::ZERO;
        }
        let mut s = self.state.lock().expect("bucket lock");
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.qps;
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        s.0 -= 1.0;
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.0 / self.qps)
        }
    }
}

/// Layer adding the limit and the counter.
#[derive(Clone)]
pub struct RateLimitLayer {
    pub bucket: Arc<Bucket>,
    pub counter: Counter,
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
            counter: self.counter.clone(),
            sleep: None,
            reserved: false,
        }
    }
}

/// The limited service. The token is taken in `poll_ready`, so callers
/// (kube's buffer worker) wait there and requests keep their order.
pub struct RateLimited<S> {
    inner: S,
    bucket: Arc<Bucket>,
    counter: Counter,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    reserved: bool,
}

impl<S, Req> Service<Req> for RateLimited<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.reserved {
            self.reserved = true;
            let wait = self.bucket.take();
            if !wait.is_zero() {
                self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
            }
        }
        if let Some(sleep) = self.sleep.as_mut() {
            std::task::ready!(sleep.as_mut().poll(cx));
            self.sleep = None;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.reserved = false;
        self.counter.inc();
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_free_then_requests_are_spaced_at_qps() {
        let b = Bucket::new(10.0, 3);
        for _ in 0..3 {
            assert_eq!(b.take(), Duration::ZERO);
        }
        let w = b.take();
        assert!(
            w > Duration::from_millis(90) && w <= Duration::from_millis(100),
            "{w:?}"
        );
    }

    #[test]
    fn zero_qps_means_unlimited() {
        let b = Bucket::new(0.0, 1);
        for _ in 0..100 {
            assert_eq!(b.take(), Duration::ZERO);
        }
    }
}
