//! Traffic recording and per-tick statistics for smartlb.
//!
//! A load balancer that adapts to its backends first has to see them. This
//! crate records what passes through the proxy, cheaply enough to sit on the
//! request path, and turns it into series an analyser can reason about.
//!
//! # Two halves
//!
//! **Recording** ([`BackendStats`], one per backend, shared as `Arc`): the
//! proxy wraps each exchange in [`BackendStats::start`], which returns an
//! [`InFlightGuard`], and ends it with [`InFlightGuard::finish`] and an
//! [`Outcome`]. That costs a handful of relaxed atomic increments: no lock,
//! no allocation. Latency goes into a log-linear histogram with atomic
//! buckets ([`AtomicHistogram`]), the bucketing of Gil Tene's HdrHistogram
//! with 32 sub-buckets per power of two, which, like DDSketch (Masson, Rim
//! and Lee, VLDB 2019), gives quantiles with a bounded *relative* error
//! (under 1.6 % from 1 µs to 100 s) and merges by adding counts, so
//! per-backend histograms add up to the upstream's and a later snapshot
//! minus an earlier one is exactly the traffic in between. A per-request
//! EWMA of latency follows successes; failures may raise it but never
//! lower it, so a backend that fails fast does not look fast.
//!
//! **Series** ([`UpstreamSeries`]): a background task calls
//! [`UpstreamSeries::tick`] every `analysis.tick`, passing the current time.
//! Each tick diffs every backend's counters and histogram against the
//! previous tick and appends a [`Sample`] (requests/s, errors/s, p50, p99,
//! mean latency, in-flight) per backend and for the upstream total to
//! bounded [`Ring`]s holding `analysis.history`. The status and traffic
//! APIs read [`BackendSummary`] and [`TrafficSnapshot`] (serde
//! `Serialize`).
//!
//! Time is an input everywhere: nothing here reads a clock, so tests and
//! the simulator drive it with explicit [`Nanos`].
//!
//! [`Ewma`] is the smoothing primitive (mean and variance) the analyser
//! builds on.
//!
//! **Analysis** ([`analysis`]): once per tick, pure functions of the tick's
//! figures and the time: a Holt-Winters forecast of the request rate with
//! its error ([`analysis::HoltWinters`]), anomaly detection on the rate and
//! on each backend's latency and error rate ([`analysis::AnomalyDetector`]),
//! and the weight controller that turns configured weight, health, slow
//! start and observed capacity into each backend's effective weight, with
//! the reasons ([`analysis::WeightController`]). [`analysis::Analyzer`] runs
//! the three for one upstream.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use smartlb_traffic::{BackendStats, FailureKind, Nanos, Outcome, SeriesConfig, UpstreamSeries};
//!
//! let config = SeriesConfig::new(Duration::from_secs(1), Duration::from_secs(3600))?;
//! let start = Nanos::from_secs(1_000);
//! let mut series = UpstreamSeries::new(config, start);
//! let web1 = Arc::new(BackendStats::new());
//! series.add_backend("10.0.0.1:80", Arc::clone(&web1), start);
//!
//! // On the request path.
//! for i in 0..100u64 {
//!     let guard = web1.start();
//!     let outcome = if i == 0 { Outcome::Failure(FailureKind::ServerError) } else { Outcome::Success };
//!     guard.finish(outcome, Duration::from_millis(10 + i % 5));
//! }
//!
//! // In the background, once a second.
//! series.tick(start + Duration::from_secs(1));
//! let sample = series.backend_samples("10.0.0.1:80").and_then(|s| s.last()).copied();
//! let sample = sample.ok_or("no sample")?;
//! assert_eq!(sample.requests, 100);
//! assert_eq!(sample.errors, 1);
//! assert_eq!(sample.rps, 100.0);
//! let p99 = sample.p99_ms.ok_or("no latency")?;
//! assert!((13.5..14.5).contains(&p99));
//!
//! let status = series.summary("10.0.0.1:80").ok_or("unknown backend")?;
//! assert_eq!(status.counters.requests_total, 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod analysis;
mod ewma;
mod histogram;
mod outcome;
mod series;
mod stats;

pub use ewma::Ewma;
pub use histogram::{
    AtomicHistogram, BUCKETS, Histogram, MAX_TRACKED, SparseHistogram, bucket_index, bucket_range,
};
pub use outcome::{FailureKind, Outcome};
pub use series::{
    BackendSummary, BackendTraffic, DEFAULT_RECENT_TICKS, MAX_HISTORY_SAMPLES, Ring, Sample,
    SeriesConfig, SeriesConfigError, TotalTraffic, TrafficSnapshot, UpstreamSeries, WindowSummary,
};
pub use smartlb_balance::Nanos;
pub use stats::{BackendStats, Counters, DEFAULT_LATENCY_ALPHA, InFlightGuard, OwnedInFlightGuard};
