//! A time-driven story of backend behaviour for the demo.
//!
//! A [`DemoPlan`] declares the backends (name and initial behaviour) and a list of
//! [`TimedAction`]s whose times are *fractions of the run*, so the same story fits a
//! 60-second demo and a 20-second one. [`DemoPlan::run`] plays it against running
//! backends and reports each change as a [`PlanEvent`] such as `t=24s flaky crashed`.
//!
//! [`DemoPlan::default_story`] is the story `smartlb demo` tells:
//!
//! | backend | behaviour |
//! | --- | --- |
//! | `fast` | about 5 ms throughout |
//! | `medium` | about 15 ms throughout |
//! | `degrading` | about 5 ms, then from 25% of the run slows steadily to about 300 ms at 80% |
//! | `flaky` | about 8 ms; crashes at 40% of the run and recovers at 65% |

use std::fmt;
use std::io;
use std::time::Duration;

use crate::backend::{DemoBackend, DemoBackendHandle, DemoBackendOptions, Latency};
use crate::error::DemoError;

/// The demo's default length.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);

/// How often a latency ramp moves the latency.
const RAMP_STEP: Duration = Duration::from_millis(250);
/// The most steps one ramp is cut into, however long it is.
const MAX_RAMP_STEPS: u32 = 2_000;

/// One backend of a plan and how it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    /// The backend's name (also its `x-backend` header).
    pub name: String,
    /// Its latency at the start.
    pub latency: Latency,
    /// Its error probability at the start.
    pub error_rate: f64,
    /// A few words on its role in the story, for the terminal view.
    pub description: String,
}

impl BackendSpec {
    /// A backend with the given name and starting latency, and no errors.
    pub fn new(name: impl Into<String>, latency: Latency) -> Self {
        Self {
            name: name.into(),
            latency,
            error_rate: 0.0,
            description: String::new(),
        }
    }

    /// This spec with a description.
    pub fn described(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
}

/// A change of behaviour.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the latency model at once.
    SetLatency(Latency),
    /// Move the latency linearly from `from` to `to`, ending at fraction `until` of
    /// the run.
    RampLatency {
        /// The latency when the ramp starts.
        from: Latency,
        /// The latency when the ramp ends.
        to: Latency,
        /// When the ramp ends, as a fraction of the run (not before the start).
        until: f64,
    },
    /// Set the error probability.
    SetErrorRate(f64),
    /// Crash the backend (see [`DemoBackendHandle::crash`]).
    Crash,
    /// Bring a crashed backend back on the same port.
    Recover,
    /// Turn the black hole on or off.
    Blackhole(bool),
    /// Make `/health` fail or pass.
    HealthFailing(bool),
}

/// An [`Action`] on one backend at a time given as a fraction of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedAction {
    /// When, as a fraction of the run in `[0, 1]`.
    pub at: f64,
    /// Which backend, by name.
    pub backend: String,
    /// What changes.
    pub action: Action,
}

impl TimedAction {
    /// `action` on `backend` at fraction `at` of the run.
    pub fn new(at: f64, backend: impl Into<String>, action: Action) -> Self {
        Self {
            at,
            backend: backend.into(),
            action,
        }
    }
}

/// Something the plan did, for the live view's event list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEvent {
    /// When it happened, from the start of the run.
    pub at: Duration,
    /// The backend it concerns.
    pub backend: String,
    /// What happened, in a few words (`crashed`, `recovered`, ...).
    pub message: String,
}

impl fmt::Display for PlanEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "t={} {} {}",
            format_elapsed(self.at),
            self.backend,
            self.message
        )
    }
}

/// A run time as the view shows it: `12s`, or `2.5s` under ten seconds.
pub fn format_elapsed(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 && (secs - secs.round()).abs() >= 0.05 {
        format!("{secs:.1}s")
    } else {
        format!("{}s", secs.round() as u64)
    }
}

/// One primitive change at an absolute offset, as [`DemoPlan::timeline`] lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When, from the start of the run.
    pub at: Duration,
    /// Which backend, by name.
    pub backend: String,
    /// What to apply.
    pub change: Change,
    /// The event to report, if this step is worth one.
    pub message: Option<String>,
}

/// A primitive change a [`Step`] applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Set the latency.
    Latency(Latency),
    /// Set the error probability.
    ErrorRate(f64),
    /// Crash.
    Crash,
    /// Recover.
    Recover,
    /// Black hole on or off.
    Blackhole(bool),
    /// Health failing on or off.
    HealthFailing(bool),
}

/// Backends and a timed story of their behaviour. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoPlan {
    backends: Vec<BackendSpec>,
    actions: Vec<TimedAction>,
}

impl DemoPlan {
    /// A plan, after checking that names are valid and unique, every action names a
    /// declared backend, times lie in `[0, 1]` and error rates in `[0, 1]`.
    pub fn new(backends: Vec<BackendSpec>, actions: Vec<TimedAction>) -> Result<Self, DemoError> {
        for (i, spec) in backends.iter().enumerate() {
            crate::backend::check_name(&spec.name)?;
            crate::backend::check_error_rate(spec.error_rate)?;
            if backends[..i].iter().any(|other| other.name == spec.name) {
                return Err(DemoError::DuplicateBackend(spec.name.clone()));
            }
        }
        for action in &actions {
            if !backends.iter().any(|b| b.name == action.backend) {
                return Err(DemoError::UnknownBackend(action.backend.clone()));
            }
            let bad_time = |reason: String| DemoError::InvalidPlanTime {
                backend: action.backend.clone(),
                reason,
            };
            if !(0.0..=1.0).contains(&action.at) {
                return Err(bad_time(format!(
                    "{} is not a fraction of the run between 0 and 1",
                    action.at
                )));
            }
            match &action.action {
                Action::RampLatency { until, .. } if !(action.at..=1.0).contains(until) => {
                    return Err(bad_time(format!(
                        "ramp ends at {until}, before it starts at {} or after the run",
                        action.at
                    )));
                }
                Action::SetErrorRate(rate) => crate::backend::check_error_rate(*rate)?,
                _ => {}
            }
        }
        Ok(Self { backends, actions })
    }

    /// The story `smartlb demo` tells: four backends, one that degrades and one that
    /// crashes and recovers (see the [module docs](self)).
    pub fn default_story() -> Self {
        let slow_end = Latency::from_millis(300, 30);
        let degrading_start = Latency::from_millis(5, 2);
        Self {
            backends: vec![
                BackendSpec::new("fast", Latency::from_millis(5, 2)).described("fast and steady"),
                BackendSpec::new("medium", Latency::from_millis(15, 5))
                    .described("steady, three times slower"),
                BackendSpec::new("degrading", degrading_start)
                    .described("slows down to ~300 ms from a quarter of the run"),
                BackendSpec::new("flaky", Latency::from_millis(8, 3))
                    .described("crashes at 40% of the run, recovers at 65%"),
            ],
            actions: vec![
                TimedAction::new(
                    0.25,
                    "degrading",
                    Action::RampLatency {
                        from: degrading_start,
                        to: slow_end,
                        until: 0.80,
                    },
                ),
                TimedAction::new(0.40, "flaky", Action::Crash),
                TimedAction::new(0.65, "flaky", Action::Recover),
            ],
        }
    }

    /// The backends the plan declares.
    pub fn backends(&self) -> &[BackendSpec] {
        &self.backends
    }

    /// The plan's actions, as given.
    pub fn actions(&self) -> &[TimedAction] {
        &self.actions
    }

    /// Starts one [`DemoBackend`] per declared backend, on `127.0.0.1` with a free
    /// port each, with its starting behaviour.
    pub async fn start_backends(&self) -> io::Result<Vec<DemoBackend>> {
        let mut started = Vec::with_capacity(self.backends.len());
        for spec in &self.backends {
            let options = DemoBackendOptions::default()
                .with_latency(spec.latency)
                .with_error_rate(spec.error_rate);
            started.push(DemoBackend::start(spec.name.clone(), options).await?);
        }
        Ok(started)
    }

    /// Every primitive change for a run of `duration`, in time order, ramps cut into
    /// steps of a quarter of a second.
    pub fn timeline(&self, duration: Duration) -> Result<Vec<Step>, DemoError> {
        if duration.is_zero() {
            return Err(DemoError::ZeroDuration {
                what: "demo duration",
            });
        }
        let mut steps = Vec::new();
        for action in &self.actions {
            let at = duration.mul_f64(action.at);
            let step = |change: Change, message: Option<String>| Step {
                at,
                backend: action.backend.clone(),
                change,
                message,
            };
            match &action.action {
                Action::SetLatency(latency) => steps.push(step(
                    Change::Latency(*latency),
                    Some(format!("latency set to {latency}")),
                )),
                Action::SetErrorRate(rate) => steps.push(step(
                    Change::ErrorRate(*rate),
                    Some(format!("error rate set to {:.0}%", rate * 100.0)),
                )),
                Action::Crash => steps.push(step(Change::Crash, Some("crashed".to_owned()))),
                Action::Recover => steps.push(step(Change::Recover, Some("recovered".to_owned()))),
                Action::Blackhole(on) => steps.push(step(
                    Change::Blackhole(*on),
                    Some(
                        if *on {
                            "stops answering (black hole)"
                        } else {
                            "answers again"
                        }
                        .to_owned(),
                    ),
                )),
                Action::HealthFailing(on) => steps.push(step(
                    Change::HealthFailing(*on),
                    Some(
                        if *on {
                            "health check starts failing"
                        } else {
                            "health check passes again"
                        }
                        .to_owned(),
                    ),
                )),
                Action::RampLatency { from, to, until } => {
                    let end = duration.mul_f64(*until).max(at);
                    let length = end - at;
                    let verb = if to.base >= from.base {
                        "slowing down"
                    } else {
                        "speeding up"
                    };
                    steps.push(step(
                        Change::Latency(*from),
                        Some(format!(
                            "starts {verb}: {from} -> {to} over {}",
                            format_elapsed(length)
                        )),
                    ));
                    let count = ramp_steps(length);
                    for i in 1..=count {
                        let fraction = f64::from(i) / f64::from(count);
                        steps.push(Step {
                            at: at + length.mul_f64(fraction),
                            backend: action.backend.clone(),
                            change: Change::Latency(from.lerp(to, fraction)),
                            message: (i == count).then(|| format!("latency reached {to}")),
                        });
                    }
                }
            }
        }
        // Stable: actions given for the same time keep their order.
        steps.sort_by_key(|s| s.at);
        Ok(steps)
    }

    /// Plays the plan over `duration` against `backends` (matched by name; extra
    /// handles are ignored), calling `on_event` for each notable change. Returns when
    /// `duration` has passed; drop the future to stop early.
    ///
    /// Fails before changing anything if `duration` is zero or a declared backend has
    /// no handle. A recovery that cannot bind is reported as an event, not an error.
    pub async fn run<F>(
        &self,
        duration: Duration,
        backends: &[DemoBackendHandle],
        mut on_event: F,
    ) -> Result<(), DemoError>
    where
        F: FnMut(PlanEvent),
    {
        let steps = self.timeline(duration)?;
        let find = |name: &str| backends.iter().find(|b| b.name() == name);
        for spec in &self.backends {
            if find(&spec.name).is_none() {
                return Err(DemoError::MissingBackend(spec.name.clone()));
            }
        }
        let start = tokio::time::Instant::now();
        for step in steps {
            tokio::time::sleep_until(start + step.at).await;
            let Some(handle) = find(&step.backend) else {
                continue; // Checked above; the plan cannot name others.
            };
            let mut message = step.message;
            match step.change {
                Change::Latency(latency) => handle.set_latency(latency),
                Change::ErrorRate(rate) => {
                    if let Err(e) = handle.set_error_rate(rate) {
                        message = Some(format!("rejected an error rate: {e}"));
                    }
                }
                Change::Crash => {
                    handle.crash();
                }
                Change::Recover => {
                    if let Err(e) = handle.recover().await {
                        message = Some(format!("failed to recover: {e}"));
                    }
                }
                Change::Blackhole(on) => handle.blackhole(on),
                Change::HealthFailing(on) => handle.set_health_failing(on),
            }
            if let Some(message) = message {
                on_event(PlanEvent {
                    at: step.at,
                    backend: step.backend,
                    message,
                });
            }
        }
        tokio::time::sleep_until(start + duration).await;
        Ok(())
    }
}

/// How many steps a ramp of `length` is cut into.
fn ramp_steps(length: Duration) -> u32 {
    let steps = (length.as_secs_f64() / RAMP_STEP.as_secs_f64()).ceil();
    (steps as u32).clamp(1, MAX_RAMP_STEPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_story_is_valid() {
        let story = DemoPlan::default_story();
        let checked = DemoPlan::new(story.backends().to_vec(), story.actions().to_vec());
        assert_eq!(checked.ok(), Some(story));
    }

    #[test]
    fn timeline_scales_with_duration() {
        let story = DemoPlan::default_story();
        for secs in [20u64, 60] {
            let steps = story
                .timeline(Duration::from_secs(secs))
                .unwrap_or_default();
            let events: Vec<(Duration, &str, &str)> = steps
                .iter()
                .filter_map(|s| s.message.as_deref().map(|m| (s.at, s.backend.as_str(), m)))
                .collect();
            let d = Duration::from_secs(secs);
            assert_eq!(events.len(), 4, "{events:?}");
            assert_eq!(events[0].0, d.mul_f64(0.25));
            assert_eq!(events[0].1, "degrading");
            assert!(events[0].2.starts_with("starts slowing down"));
            assert_eq!(
                (events[1].0, events[1].1, events[1].2),
                (d.mul_f64(0.40), "flaky", "crashed")
            );
            assert_eq!(
                (events[2].0, events[2].1, events[2].2),
                (d.mul_f64(0.65), "flaky", "recovered")
            );
            assert_eq!(events[3].0, d.mul_f64(0.80));
            assert!(events[3].2.starts_with("latency reached 300 ms"));
            // Sorted, and the ramp ends at the target latency.
            assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
            let last_latency = steps
                .iter()
                .filter(|s| s.backend == "degrading")
                .filter_map(|s| match s.change {
                    Change::Latency(l) => Some(l),
                    _ => None,
                })
                .next_back();
            assert_eq!(last_latency, Some(Latency::from_millis(300, 30)));
        }
    }

    #[test]
    fn ramp_latency_rises_monotonically() {
        let steps = DemoPlan::default_story()
            .timeline(Duration::from_secs(20))
            .unwrap_or_default();
        let bases: Vec<Duration> = steps
            .iter()
            .filter_map(|s| match s.change {
                Change::Latency(l) => Some(l.base),
                _ => None,
            })
            .collect();
        assert!(bases.len() > 10);
        assert!(bases.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn bad_plans_are_rejected() {
        let spec = || vec![BackendSpec::new("a", Latency::ZERO)];
        assert!(matches!(
            DemoPlan::new(spec(), vec![TimedAction::new(0.5, "b", Action::Crash)]),
            Err(DemoError::UnknownBackend(_))
        ));
        assert!(matches!(
            DemoPlan::new(spec(), vec![TimedAction::new(1.5, "a", Action::Crash)]),
            Err(DemoError::InvalidPlanTime { .. })
        ));
        assert!(matches!(
            DemoPlan::new(spec(), vec![TimedAction::new(f64::NAN, "a", Action::Crash)]),
            Err(DemoError::InvalidPlanTime { .. })
        ));
        let ramp = Action::RampLatency {
            from: Latency::ZERO,
            to: Latency::ZERO,
            until: 0.2,
        };
        assert!(matches!(
            DemoPlan::new(spec(), vec![TimedAction::new(0.5, "a", ramp)]),
            Err(DemoError::InvalidPlanTime { .. })
        ));
        assert!(matches!(
            DemoPlan::new(
                spec(),
                vec![TimedAction::new(0.5, "a", Action::SetErrorRate(2.0))]
            ),
            Err(DemoError::InvalidErrorRate(_))
        ));
        let twice = vec![
            BackendSpec::new("a", Latency::ZERO),
            BackendSpec::new("a", Latency::ZERO),
        ];
        assert!(matches!(
            DemoPlan::new(twice, vec![]),
            Err(DemoError::DuplicateBackend(_))
        ));
        assert!(matches!(
            DemoPlan::new(vec![BackendSpec::new("", Latency::ZERO)], vec![]),
            Err(DemoError::InvalidBackendName(_))
        ));
        assert!(matches!(
            DemoPlan::default_story().timeline(Duration::ZERO),
            Err(DemoError::ZeroDuration { .. })
        ));
    }

    #[test]
    fn events_display_with_time() {
        let event = PlanEvent {
            at: Duration::from_secs(12),
            backend: "flaky".to_owned(),
            message: "crashed".to_owned(),
        };
        assert_eq!(event.to_string(), "t=12s flaky crashed");
        assert_eq!(format_elapsed(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format_elapsed(Duration::from_millis(8000)), "8s");
        assert_eq!(format_elapsed(Duration::from_millis(12_400)), "12s");
    }
}
