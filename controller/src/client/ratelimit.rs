//! Client-side QPS/burst limit on Kubernetes API requests (a token bucket,
//! like client-go's).
//!
//! Two priorities share one bucket: writes that make Secrets right take
//! tokens as they come (queueing behind each other), while background
//! requests (Normal Events) only take a token that is free, so they go out
//! when the writes leave room and never delay them.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{Layer, Service};

/// A token bucket: `rate` tokens a second, holding at most `burst`. A rate
/// of zero or less means no limit. The one bucket type of the controller:
/// the client's QPS limit ([`Bucket`]) and the HTTP API's per-client limit
/// both count with it.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    pub fn unlimited(&self) -> bool {
        self.rate <= 0.0
    }

    /// When a token was last asked for.
    pub fn last_used(&self) -> Instant {
        self.last
    }

    fn refill(&mut self, now: Instant) {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
    }

    /// Takes one token if a whole one is free, without going into debt;
    /// otherwise returns how long until one may be.
    pub fn take_spare(&mut self, now: Instant) -> Result<(), Duration> {
        if self.unlimited() {
            return Ok(());
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Takes one token, going into debt if need be; returns how long to
    /// wait until it is paid for.
    pub fn take(&mut self, now: Instant) -> Duration {
        if self.unlimited() {
            return Duration::ZERO;
        }
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A token bucket shared by every clone of the service, and when a normal
/// request last took a token.
#[derive(Debug)]
pub struct Bucket(Mutex<(TokenBucket, Option<Instant>)>);

/// How long after the last normal request a background one may go: the
/// API server, not only the client's limit, is what background requests
/// must not take from the writes (with `--kube-qps 0` there is no limit at
/// all, yet a cold start keeps the API server saturated).
const QUIET: Duration = Duration::from_millis(100);

impl Bucket {
    /// `qps <= 0` means no limit.
    pub fn new(qps: f64, burst: u32) -> Arc<Self> {
        Arc::new(Bucket(Mutex::new((
            TokenBucket::new(qps, burst, Instant::now()),
            None,
        ))))
    }

    fn take_spare(&self) -> Result<(), Duration> {
        self.take_spare_at(Instant::now())
    }

    /// A spare token, once no normal request has been made for [`QUIET`].
    fn take_spare_at(&self, now: Instant) -> Result<(), Duration> {
        let mut b = self.0.lock().expect("bucket lock");
        if let Some(last) = b.1 {
            let quiet = now.saturating_duration_since(last);
            if quiet < QUIET {
                return Err(QUIET - quiet);
            }
        }
        b.0.take_spare(now)
    }

    fn take(&self) -> Duration {
        let now = Instant::now();
        let mut b = self.0.lock().expect("bucket lock");
        b.1 = Some(now);
        b.0.take(now)
    }
}

/// How often, at most, a background request looks for a spare token.
const BACKGROUND_POLL: Duration = Duration::from_millis(100);

/// Who waits for whom at the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Queues for tokens in order (reconcile reads and writes).
    Normal,
    /// Takes only spare tokens (Events that can wait).
    Background,
}

/// Layer adding the limit.
#[derive(Clone)]
pub struct RateLimitLayer {
    pub bucket: Arc<Bucket>,
    pub priority: Priority,
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
            priority: self.priority,
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
    priority: Priority,
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
        if self.priority == Priority::Background {
            while !self.reserved {
                if let Some(sleep) = self.sleep.as_mut() {
                    std::task::ready!(sleep.as_mut().poll(cx));
                    self.sleep = None;
                }
                match self.bucket.take_spare() {
                    Ok(()) => self.reserved = true,
                    // While writes keep the bucket empty, look again only
                    // now and then: waking at every token would cost as
                    // many wakeups as the writes themselves.
                    Err(wait) => {
                        self.sleep = Some(Box::pin(tokio::time::sleep(wait.max(BACKGROUND_POLL))))
                    }
                }
            }
            return self.inner.poll_ready(cx);
        }
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
    fn background_takes_only_spare_tokens() {
        let b = Bucket::new(10.0, 2);
        assert_eq!(b.take_spare(), Ok(()));
        assert_eq!(b.take(), Duration::ZERO);
        // Normal requests go into debt; background ones wait until the
        // debt is paid and a whole token has come back.
        let w = b.take();
        assert!(w > Duration::from_millis(90), "{w:?}");
        let later = Instant::now() + QUIET;
        let spare = b.take_spare_at(later).unwrap_err();
        assert!(spare > Duration::from_millis(90), "{spare:?}");
        assert_eq!(Bucket::new(0.0, 1).take_spare(), Ok(()));
    }

    /// Without a client limit the API server is still busy with the
    /// writes: background requests wait until none was sent for a while.
    #[test]
    fn background_waits_for_a_pause_in_normal_requests_even_unlimited() {
        let b = Bucket::new(0.0, 1);
        assert_eq!(b.take(), Duration::ZERO);
        let now = Instant::now();
        let wait = b.take_spare_at(now).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= QUIET, "{wait:?}");
        assert_eq!(b.take_spare_at(now + QUIET), Ok(()));
        // Limited, a pause is not enough: the token must be spare too.
        let b = Bucket::new(10.0, 1);
        assert_eq!(b.take(), Duration::ZERO);
        assert!(b.take() > Duration::ZERO);
        assert!(b.take_spare_at(Instant::now() + QUIET).is_err());
    }

    #[test]
    fn zero_qps_means_unlimited() {
        let b = Bucket::new(0.0, 1);
        for _ in 0..100 {
            assert_eq!(b.take(), Duration::ZERO);
        }
    }
}
