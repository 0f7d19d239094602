//! The retry policy of an upstream: which failures are retried, and the budget that keeps
//! retries from multiplying load on a struggling upstream.

use std::sync::atomic::{AtomicI64, Ordering};

use http::{Method, StatusCode};
use smartlb_config::{RetryConfig, RetryOn};

/// One token, in the budget's fixed-point unit.
const TOKEN: i64 = 1000;
/// Tokens the budget starts with and never exceeds: a burst of this many retries is always
/// allowed, however little traffic came before (so a backend dying under light load costs
/// no request either).
const MAX_TOKENS: i64 = 20 * TOKEN;

/// Retry rules and budget for one upstream.
#[derive(Debug)]
pub struct RetryPolicy {
    attempts: u32,
    on_connect_failure: bool,
    on_reset: bool,
    on_timeout: bool,
    statuses: Vec<StatusCode>,
    deposit: i64,
    tokens: AtomicI64,
}

impl RetryPolicy {
    /// The policy described by an `[upstream.retry]` table.
    pub fn new(config: &RetryConfig) -> Self {
        let mut statuses = Vec::new();
        let (mut connect, mut reset, mut timeout) = (false, false, false);
        for on in &config.on {
            match on {
                RetryOn::ConnectFailure => connect = true,
                RetryOn::Reset => reset = true,
                RetryOn::Timeout => timeout = true,
                RetryOn::Status(code) => {
                    if let Ok(status) = StatusCode::from_u16(*code) {
                        statuses.push(status);
                    }
                }
            }
        }
        Self {
            attempts: config.attempts,
            on_connect_failure: connect,
            on_reset: reset,
            on_timeout: timeout,
            statuses,
            deposit: (config.budget_ratio * TOKEN as f64).round() as i64,
            tokens: AtomicI64::new(MAX_TOKENS),
        }
    }

    /// Extra tries allowed per request.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether a request that failed to connect may be retried.
    pub fn retries_connect_failure(&self) -> bool {
        self.on_connect_failure
    }

    /// Whether a reset or a timeout of this kind is retried.
    pub fn retries_error(&self, reset: bool, timeout: bool) -> bool {
        (reset && self.on_reset) || (timeout && self.on_timeout)
    }

    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status)
    }

    /// Credits the budget for one request.
    #[inline]
    pub fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        // A relaxed add then a clamp: the budget is approximate by design.
        let previous = self.tokens.fetch_add(self.deposit, Ordering::Relaxed);
        if previous + self.deposit > MAX_TOKENS {
            self.tokens.fetch_min(MAX_TOKENS, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget; `false` when the budget is spent.
    pub fn withdraw(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= TOKEN).then_some(t - TOKEN)
            })
            .is_ok()
    }
}

/// Methods that may be sent again after a first attempt reached the backend (RFC 9110 9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ratio: f64) -> RetryConfig {
        RetryConfig {
            attempts: 2,
            on: vec![
                RetryOn::ConnectFailure,
                RetryOn::Reset,
                RetryOn::Status(503),
            ],
            budget_ratio: ratio,
        }
    }

    #[test]
    fn budget_allows_a_burst_then_the_ratio() {
        let policy = RetryPolicy::new(&config(0.2));
        let burst = (0..100).take_while(|_| policy.withdraw()).count();
        assert_eq!(burst, 20);
        assert!(!policy.withdraw());
        for _ in 0..10 {
            policy.deposit();
        }
        assert_eq!((0..100).take_while(|_| policy.withdraw()).count(), 2);
    }

    #[test]
    fn budget_never_exceeds_its_cap() {
        let policy = RetryPolicy::new(&config(1.0));
        for _ in 0..1000 {
            policy.deposit();
        }
        assert_eq!((0..100).take_while(|_| policy.withdraw()).count(), 20);
    }

    #[test]
    fn rules_follow_the_config() {
        let policy = RetryPolicy::new(&config(0.2));
        assert!(policy.retries_connect_failure());
        assert!(policy.retries_error(true, false));
        assert!(!policy.retries_error(false, true));
        assert!(policy.retries_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!policy.retries_status(StatusCode::BAD_GATEWAY));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
    }
}
