//! How one proxied exchange with a backend ended.

use std::fmt;

/// Why an exchange with a backend failed.
///
/// The proxy classifies each failure once and hands the same value to the
/// traffic recorder ([`BackendStats::record`](crate::BackendStats::record))
/// and to the passive outlier detector in `smartlb-health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The TCP (or TLS) connection to the backend could not be established.
    Connect,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// The backend did not answer in time.
    Timeout,
    /// The backend answered with a 5xx status.
    ServerError,
    /// The backend answered 429 Too Many Requests: it pushes back. Counted as
    /// an error for traffic analysis (a fast 429 must not look like a fast
    /// backend) but not by the outlier detector, as in Envoy.
    Throttled,
}

impl FailureKind {
    /// Number of kinds, for per-kind counter arrays.
    pub const COUNT: usize = 5;

    /// All kinds, in [`index`](FailureKind::index) order.
    pub const ALL: [FailureKind; FailureKind::COUNT] = [
        FailureKind::Connect,
        FailureKind::Reset,
        FailureKind::Timeout,
        FailureKind::ServerError,
        FailureKind::Throttled,
    ];

    /// A short stable name, usable as a metrics label: `connect`, `reset`,
    /// `timeout`, `5xx`, `429`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
            FailureKind::ServerError => "5xx",
            FailureKind::Throttled => "429",
        }
    }

    /// A dense index in `0..COUNT`.
    #[inline]
    pub const fn index(self) -> usize {
        match self {
            FailureKind::Connect => 0,
            FailureKind::Reset => 1,
            FailureKind::Timeout => 2,
            FailureKind::ServerError => 3,
            FailureKind::Throttled => 4,
        }
    }

    /// Whether the passive outlier detector counts this kind towards
    /// `consecutive_failures` (connect errors, resets, timeouts and 5xx).
    #[inline]
    pub const fn is_outlier_failure(self) -> bool {
        !matches!(self, FailureKind::Throttled)
    }

    /// Classifies a response status: 5xx is [`ServerError`](FailureKind::ServerError),
    /// 429 is [`Throttled`](FailureKind::Throttled), anything else is not a failure.
    #[inline]
    pub const fn from_status(status: u16) -> Option<FailureKind> {
        match status {
            429 => Some(FailureKind::Throttled),
            500..=599 => Some(FailureKind::ServerError),
            _ => None,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an exchange with a backend ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A response that is not a failure (1xx-4xx except 429).
    Success,
    /// A failure attributable to the backend.
    Failure(FailureKind),
    /// The client went away before the exchange finished. Counted as a
    /// request, but neither as an error nor as a latency sample: it says
    /// nothing about the backend.
    Cancelled,
}

impl Outcome {
    /// Classifies a completed response by its status code.
    #[inline]
    pub const fn from_status(status: u16) -> Outcome {
        match FailureKind::from_status(status) {
            Some(kind) => Outcome::Failure(kind),
            None => Outcome::Success,
        }
    }

    /// Whether this outcome counts as an error.
    #[inline]
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure(_))
    }
}

impl From<FailureKind> for Outcome {
    fn from(kind: FailureKind) -> Self {
        Outcome::Failure(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(Outcome::from_status(200), Outcome::Success);
        assert_eq!(Outcome::from_status(404), Outcome::Success);
        assert_eq!(
            Outcome::from_status(429),
            Outcome::Failure(FailureKind::Throttled)
        );
        assert_eq!(
            Outcome::from_status(503),
            Outcome::Failure(FailureKind::ServerError)
        );
        assert_eq!(
            Outcome::from(FailureKind::Reset),
            Outcome::Failure(FailureKind::Reset)
        );
        assert!(Outcome::from(FailureKind::Reset).is_failure());
        assert!(FailureKind::Timeout.is_outlier_failure());
        assert!(!FailureKind::Throttled.is_outlier_failure());
        for (i, k) in FailureKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        assert_eq!(FailureKind::ServerError.to_string(), "5xx");
    }
}
