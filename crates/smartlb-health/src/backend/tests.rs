use super::*;
use crate::budget::Tier;
use crate::config::SlowStartConfig;

const S: u64 = 1_000_000_000;

fn at(secs: u64) -> Nanos {
    Nanos(secs * S)
}

fn at_ms(ms: u64) -> Nanos {
    Nanos(ms * 1_000_000)
}

fn outlier(n: u32, base: u64, max: u64, pct: u32) -> OutlierConfig {
    OutlierConfig {
        consecutive_failures: n,
        base_ejection_time: Duration::from_secs(base),
        max_ejection_time: Duration::from_secs(max),
        max_ejection_percent: pct,
    }
}

fn config() -> HealthConfig {
    HealthConfig {
        active: Some(ActiveThresholds {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }),
        outlier: Some(outlier(5, 10, 35, 100)),
        slow_start: None,
    }
}

/// Outlier detection alone: ejections end with their time.
fn passive() -> HealthConfig {
    HealthConfig {
        active: None,
        ..config()
    }
}

fn budget() -> Arc<EjectionBudget> {
    Arc::new(EjectionBudget::new(100))
}

fn fail_n(h: &BackendHealth, n: u32, now: Nanos) -> Option<Transition> {
    let mut last = None;
    for _ in 0..n {
        if let Some(t) = h.record_failure(FailureKind::ServerError, now) {
            assert!(last.is_none(), "two transitions");
            last = Some(t);
        }
    }
    last
}

#[test]
fn starts_healthy_or_in_slow_start() {
    let mut cfg = config();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let h = BackendHealth::new(&cfg, budget());
    assert_eq!(h.state(at(1)), HealthState::Healthy);
    assert_eq!(h.weight_factor(at(1)), 1.0);
    assert_eq!(h.poll(at(1)), None);

    let j = BackendHealth::joining(&cfg, budget(), at(100));
    assert_eq!(j.state(at(100)), HealthState::SlowStart);
    assert!(j.is_available(at(100)));
    assert_eq!(j.poll(at(105)), None);
    let t = j.poll(at(110)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::SlowStart, HealthState::Healthy)
    );
    assert_eq!(t.reason, "slow start complete");
    assert_eq!(j.poll(at(111)), None);

    let b = BackendHealth::new(&cfg, budget()).with_backup(true);
    assert_eq!(b.state(at(1)), HealthState::Backup);
    assert_eq!(b.poll(at(1)), None);
}

#[test]
fn rise_and_fall_thresholds() {
    let h = BackendHealth::new(&config(), budget());
    assert_eq!(h.record_check(false, at(1)), None);
    assert_eq!(h.record_check(false, at(2)), None);
    // A pass in between restarts the count.
    assert_eq!(h.record_check(true, at(3)), None);
    assert_eq!(h.record_check(false, at(4)), None);
    assert_eq!(h.record_check(false, at(5)), None);
    let t = h.record_check(false, at(6)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Healthy, HealthState::Unhealthy)
    );
    assert_eq!(t.reason, "3 consecutive failing health checks");
    assert!(!h.is_available(at(6)));
    assert_eq!(h.weight_factor(at(6)), 0.0);
    assert_eq!(h.record_check(false, at(7)), None);

    assert_eq!(h.record_check(true, at(8)), None);
    assert_eq!(h.record_check(false, at(9)), None);
    assert_eq!(h.record_check(true, at(10)), None);
    let t = h.record_check(true, at(11)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Unhealthy, HealthState::Healthy)
    );
    assert_eq!(
        t.to_string(),
        "unhealthy -> healthy: 2 consecutive passing health checks"
    );
    assert!(h.is_available(at(11)));
    assert_eq!(h.checks_passed(), 4);
    assert_eq!(h.checks_failed(), 7);
}

#[test]
fn checks_are_ignored_without_active_config() {
    let mut cfg = config();
    cfg.active = None;
    let h = BackendHealth::new(&cfg, budget());
    for i in 0..10 {
        assert_eq!(h.record_check(false, at(i)), None);
    }
    assert_eq!(h.state(at(10)), HealthState::Healthy);
    assert_eq!(h.checks_failed(), 10);
}

#[test]
fn consecutive_failures_eject_and_success_resets() {
    let h = BackendHealth::new(&passive(), budget());
    assert_eq!(fail_n(&h, 4, at(1)), None);
    h.record_success();
    assert_eq!(h.consecutive_failures(), 0);
    assert_eq!(fail_n(&h, 4, at(2)), None);
    // 429 and cancellations do not count, and do not reset.
    assert_eq!(h.record_failure(FailureKind::Throttled, at(2)), None);
    assert_eq!(h.record(Outcome::Cancelled, at(2)), None);
    assert_eq!(h.consecutive_failures(), 4);
    let t = h
        .record(Outcome::Failure(FailureKind::Timeout), at(2))
        .unwrap();
    assert_eq!((t.from, t.to), (HealthState::Healthy, HealthState::Ejected));
    assert_eq!(
        t.reason,
        "5 consecutive failures (last: timeout); ejected for 10s"
    );
    assert_eq!(h.ejected_until(at(2)), Some(at(12)));
    assert_eq!(h.ejections_total(), 1);
    assert!(!h.is_available(at(11)));
    // Failures of requests finishing while ejected are ignored.
    assert_eq!(fail_n(&h, 20, at(5)), None);
    assert_eq!(h.consecutive_failures(), 0);
    assert_eq!(h.ejected_until(at(5)), Some(at(12)));
    // Back by itself when the time is up; poll reports it once.
    assert!(h.is_available(at(12)));
    assert_eq!(h.state(at(12)), HealthState::Healthy);
    let t = h.poll(at(12)).unwrap();
    assert_eq!((t.from, t.to), (HealthState::Ejected, HealthState::Healthy));
    assert_eq!(t.reason, "ejection time is up");
    assert_eq!(h.poll(at(13)), None);
}

#[test]
fn ejection_doubles_up_to_the_cap_and_decays() {
    // base 10 s, max 35 s.
    let h = BackendHealth::new(&passive(), budget());
    let mut now = at(0);
    let mut lengths = Vec::new();
    for _ in 0..4 {
        assert!(fail_n(&h, 5, now).is_some());
        let until = h.ejected_until(now).unwrap();
        lengths.push((until.0 - now.0) / S);
        // Fail again right after coming back.
        now = until;
    }
    assert_eq!(lengths, vec![10, 20, 35, 35]);

    // Level is capped (at 2: 10 * 2^2 = 40 >= 35); each 10 s in service
    // steps it down once.
    let back = now;
    assert!(fail_n(&h, 5, Nanos(back.0 + 10 * S)).is_some());
    let start = Nanos(back.0 + 10 * S);
    assert_eq!(h.ejected_until(start), Some(Nanos(start.0 + 20 * S)));

    let back = Nanos(start.0 + 20 * S);
    // 25 s in service: two steps down from level 2 => base.
    let t = Nanos(back.0 + 25 * S);
    assert!(fail_n(&h, 5, t).is_some());
    assert_eq!(h.ejected_until(t), Some(Nanos(t.0 + 10 * S)));
    assert_eq!(h.ejections_total(), 6);
}

#[test]
fn max_ejection_percent_holds_back() {
    let b = Arc::new(EjectionBudget::new(50));
    let mut cfg = passive();
    cfg.outlier = Some(outlier(2, 10, 300, 50));
    let hs: Vec<BackendHealth> = (0..4)
        .map(|_| BackendHealth::new(&cfg, Arc::clone(&b)))
        .collect();
    assert_eq!(b.members(), 4);
    assert!(fail_n(&hs[0], 2, at(0)).is_some());
    assert!(fail_n(&hs[1], 2, at(1)).is_some());
    // A third would exceed 50 % of 4.
    assert_eq!(fail_n(&hs[2], 2, at(2)), None);
    assert_eq!(hs[2].ejections_suppressed(), 1);
    assert!(hs[2].is_available(at(2)));
    assert_eq!(hs[2].consecutive_failures(), 0);
    assert_eq!(b.ejected(at(2)), 2);
    // Once the first ejection is over, there is room again.
    assert!(fail_n(&hs[2], 2, at(10)).is_some());
    assert_eq!(b.ejected(at(10)), 2);
    assert!(!b.allows_one_more(at(10)));

    // A removed backend no longer counts, as a member or as ejected.
    let mut hs = hs;
    drop(hs.remove(1));
    assert_eq!(b.members(), 3);
    assert_eq!(b.ejected(at(10)), 1);
    assert_eq!(b.max_ejected(), 1);
    assert_eq!(fail_n(&hs[2], 2, at(11)), None);

    // A lone backend is never ejected at 50 %.
    let lone_budget = Arc::new(EjectionBudget::new(50));
    let lone = BackendHealth::new(&cfg, lone_budget);
    assert_eq!(fail_n(&lone, 10, at(0)), None);
    assert!(lone.is_available(at(0)));
}

#[test]
fn concurrent_failures_eject_once() {
    let h = Arc::new(BackendHealth::new(&config(), budget()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                let mut transitions = 0;
                for _ in 0..100 {
                    if h.record_failure(FailureKind::Reset, at(1)).is_some() {
                        transitions += 1;
                    }
                }
                transitions
            })
        })
        .collect();
    let total: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 1);
    assert_eq!(h.ejections_total(), 1);
}

#[test]
fn slow_start_ramp_values() {
    let mut cfg = config();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let h = BackendHealth::joining(&cfg, budget(), at(100));
    let f = |ms: u64| h.weight_factor(Nanos(100 * S + ms * 1_000_000));
    assert_eq!(f(0), 0.1);
    assert_eq!(f(500), 0.1);
    assert!((f(2_500) - 0.25).abs() < 1e-12);
    assert!((f(5_000) - 0.5).abs() < 1e-6);
    assert!((f(9_000) - 0.9).abs() < 1e-12);
    assert_eq!(f(10_000), 1.0);
    assert_eq!(f(99_000), 1.0);
    assert_eq!(h.state(at(105)), HealthState::SlowStart);
    assert_eq!(h.state(at(110)), HealthState::Healthy);

    // Aggression 2: sqrt(t / d).
    cfg.slow_start = Some(SlowStartConfig {
        duration: Duration::from_secs(10),
        aggression: 2.0,
        min_factor: 0.05,
    });
    let h = BackendHealth::joining(&cfg, budget(), at(0));
    assert!((h.weight_factor(at_ms(2_500)) - 0.5).abs() < 1e-6);
    assert!((h.weight_factor(at_ms(100)) - 0.1).abs() < 1e-6);
    assert_eq!(h.weight_factor(at_ms(1)), 0.05);
}

#[test]
fn recovery_goes_through_slow_start() {
    let mut cfg = passive();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let h = BackendHealth::new(&cfg, budget());
    // Ejected at 0 for 10 s: slow start runs from 10 s to 20 s.
    assert!(fail_n(&h, 5, at(0)).is_some());
    assert_eq!(h.weight_factor(at(5)), 0.0);
    assert_eq!(h.state(at(10)), HealthState::SlowStart);
    assert!((h.weight_factor(at(15)) - 0.5).abs() < 1e-6);
    let t = h.poll(at(15)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Ejected, HealthState::SlowStart)
    );
    let t = h.poll(at(20)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::SlowStart, HealthState::Healthy)
    );

    // Unhealthy, then back after two passes: slow start from the second.
    let mut cfg = config();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let h = BackendHealth::new(&cfg, budget());
    for i in 0..3 {
        h.record_check(false, at(30 + i));
    }
    assert_eq!(h.state(at(33)), HealthState::Unhealthy);
    h.record_check(true, at(40));
    let t = h.record_check(true, at(42)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Unhealthy, HealthState::SlowStart)
    );
    assert_eq!(h.weight_factor(at(42)), 0.1);
    assert!((h.weight_factor(at(47)) - 0.5).abs() < 1e-6);
}

#[test]
fn with_active_checks_an_ejection_ends_through_them() {
    let mut cfg = config();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let b = Arc::new(EjectionBudget::new(50));
    let h = BackendHealth::new(&cfg, Arc::clone(&b));
    let _other = BackendHealth::new(&cfg, Arc::clone(&b));
    // The checks run (they reported once).
    assert_eq!(h.record_check(true, at(0)), None);
    let t = fail_n(&h, 5, at(0)).unwrap();
    assert_eq!(
        t.reason,
        "5 consecutive failures (last: 5xx); ejected for 10s, then until health checks pass"
    );
    assert!(h.is_awaiting_checks());
    // One pass during the ejection is not enough.
    assert_eq!(h.record_check(true, at(5)), None);
    // Time is up: held out (and still counted) until the checks pass.
    assert_eq!(h.state(at(10)), HealthState::Unhealthy);
    assert!(!h.is_available(at(10)));
    assert_eq!(b.ejected(at(10)), 1);
    let t = h.poll(at(10)).unwrap();
    assert_eq!(
        t.to_string(),
        "ejected -> unhealthy: ejection time is up; back after 2 passing health checks"
    );
    // Requests still in flight may fail: ignored.
    assert_eq!(fail_n(&h, 10, at(11)), None);
    let t = h.record_check(true, at(12)).unwrap();
    assert_eq!(
        t.to_string(),
        "unhealthy -> slow-start: 2 consecutive passing health checks"
    );
    assert!(!h.is_awaiting_checks());
    assert_eq!(b.ejected(at(12)), 0);
    // The ramp starts when it is back.
    assert_eq!(h.weight_factor(at(12)), 0.1);
    assert!((h.weight_factor(at(17)) - 0.5).abs() < 1e-6);
    assert_eq!(h.ejections_total(), 1);
}

#[test]
fn checks_passing_while_ejected_keep_it_ejected_until_its_time() {
    let mut cfg = config();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let h = BackendHealth::new(&cfg, budget());
    assert_eq!(h.record_check(true, at(0)), None);
    // Real traffic fails while the health endpoint passes.
    assert!(fail_n(&h, 5, at(0)).is_some());
    assert!(h.is_awaiting_checks());
    for i in 1..=5 {
        assert_eq!(h.record_check(true, at(i)), None);
    }
    assert!(!h.is_awaiting_checks());
    assert_eq!(h.state(at(9)), HealthState::Ejected);
    // Back right on time, with no wait for more checks.
    assert_eq!(h.state(at(10)), HealthState::SlowStart);
    let t = h.poll(at(10)).unwrap();
    assert_eq!(t.to_string(), "ejected -> slow-start: ejection time is up");
    assert_eq!(h.weight_factor(at(10)), 0.1);
}

#[test]
fn checks_that_see_a_restart_end_the_ejection() {
    let mut cfg = config();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let b = Arc::new(EjectionBudget::new(100));
    let h = BackendHealth::new(&cfg, Arc::clone(&b));
    // Crashed: traffic ejects it, then the checks take it down too.
    assert!(fail_n(&h, 5, at(0)).is_some());
    for i in 1..=3 {
        assert_eq!(h.record_check(false, at(i)), None);
    }
    assert!(h.is_check_failing());
    assert_eq!(h.state(at(3)), HealthState::Ejected);
    // Restarted at 4 s: two passes bring it back long before the 10 s.
    assert_eq!(h.record_check(true, at(4)), None);
    let t = h.record_check(true, at(5)).unwrap();
    assert_eq!(
        t.to_string(),
        "ejected -> slow-start: 2 consecutive passing health checks; ejection ended early"
    );
    assert!(h.is_available(at(5)));
    assert_eq!(h.ejected_until(at(5)), None);
    assert_eq!(b.ejected(at(5)), 0);
    assert_eq!(h.weight_factor(at(5)), 0.1);
    assert!((h.weight_factor(at(10)) - 0.5).abs() < 1e-6);
    assert_eq!(h.poll(at(6)), None);

    // Unhealthy first, then ejected by requests still in flight: the same.
    let h = BackendHealth::new(&cfg, budget());
    for i in 0..3 {
        h.record_check(false, at(i));
    }
    assert!(fail_n(&h, 5, at(3)).is_some());
    assert_eq!(h.state(at(3)), HealthState::Ejected);
    assert_eq!(h.record_check(true, at(4)), None);
    let t = h.record_check(true, at(5)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Ejected, HealthState::SlowStart)
    );
}

#[test]
fn checks_that_never_ran_do_not_hold_a_backend_out() {
    // Active checks configured, but no checker ever reported (an embedder
    // without the background tasks): the ejection ends with its time.
    let h = BackendHealth::new(&config(), budget());
    let t = fail_n(&h, 5, at(0)).unwrap();
    assert_eq!(
        t.reason,
        "5 consecutive failures (last: 5xx); ejected for 10s"
    );
    assert!(!h.is_awaiting_checks());
    assert_eq!(h.state(at(10)), HealthState::Healthy);
}

#[test]
fn transitions_always_chain() {
    // Ejection over, not yet polled, and ejected again: one transition whose
    // reason tells both steps, starting from the state last reported.
    let h = BackendHealth::new(&passive(), budget());
    let t = fail_n(&h, 5, at(0)).unwrap();
    assert_eq!(t.to, HealthState::Ejected);
    let t = fail_n(&h, 5, at(11)).unwrap();
    assert_eq!((t.from, t.to), (HealthState::Ejected, HealthState::Ejected));
    assert_eq!(
        t.reason,
        "ejection time is up, then 5 consecutive failures (last: 5xx); ejected for 20s"
    );
    assert_eq!(h.poll(at(12)), None);
    let t = h.poll(at(31)).unwrap();
    assert_eq!((t.from, t.to), (HealthState::Ejected, HealthState::Healthy));
}

#[test]
fn ejection_and_active_checks_are_independent() {
    let mut cfg = config();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let h = BackendHealth::new(&cfg, budget());
    assert!(fail_n(&h, 5, at(0)).is_some());
    // Checks fail during the ejection: the state stays "ejected".
    for i in 1..=3 {
        assert_eq!(h.record_check(false, at(i)), None);
    }
    assert_eq!(h.state(at(5)), HealthState::Ejected);
    // Time is up, but the checks hold it out.
    assert_eq!(h.state(at(10)), HealthState::Unhealthy);
    let t = h.poll(at(10)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Ejected, HealthState::Unhealthy)
    );
    h.record_check(true, at(11));
    let t = h.record_check(true, at(12)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Unhealthy, HealthState::SlowStart)
    );
    assert_eq!(h.weight_factor(at(12)), 0.1);
}

#[test]
fn draining() {
    let mut cfg = config();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let h = BackendHealth::new(&cfg, budget());
    let t = h.set_draining(true, at(1)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Healthy, HealthState::Draining)
    );
    assert_eq!(t.reason, "drain requested");
    assert_eq!(h.set_draining(true, at(2)), None);
    assert!(h.is_draining());
    assert!(!h.is_available(at(2)));
    assert_eq!(h.weight_factor(at(2)), 0.0);
    // Draining wins over other states.
    for i in 0..3 {
        assert_eq!(h.record_check(false, at(3 + i)), None);
    }
    assert_eq!(h.state(at(6)), HealthState::Draining);
    for i in 0..2 {
        h.record_check(true, at(7 + i));
    }
    let t = h.set_draining(false, at(20)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Draining, HealthState::SlowStart)
    );
    assert_eq!(h.weight_factor(at(20)), 0.1);
}

#[test]
fn backups_serve_when_no_primary_is_available() {
    let cfg = config();
    let b = budget();
    let p1 = BackendHealth::new(&cfg, Arc::clone(&b));
    let p2 = BackendHealth::new(&cfg, Arc::clone(&b));
    let bk = BackendHealth::new(&cfg, Arc::clone(&b)).with_backup(true);
    assert!(bk.is_backup());
    let all = [&p1, &p2, &bk];
    let tier = |now| Tier::select(all.iter().map(|h| h.view(now)));
    assert_eq!(tier(at(0)), Tier::Primary);
    assert!(!tier(at(0)).admits(bk.view(at(0))));
    p1.set_draining(true, at(1));
    assert_eq!(tier(at(1)), Tier::Primary);
    assert!(fail_n(&p2, 5, at(2)).is_some());
    // Its checks keep passing, so it returns when the ejection time is up.
    p2.record_check(true, at(3));
    p2.record_check(true, at(4));
    assert_eq!(tier(at(2)), Tier::Backup);
    assert!(tier(at(2)).admits(bk.view(at(2))));
    assert!(!tier(at(2)).admits(p2.view(at(2))));
    // p2's ejection ends at 12 s: primaries again.
    assert_eq!(tier(at(12)), Tier::Primary);
    for i in 0..3 {
        bk.record_check(false, at(20 + i));
    }
    assert!(fail_n(&p2, 5, at(20)).is_some());
    assert_eq!(tier(at(25)), Tier::None);

    // A role change is a visible transition only for an available backend.
    assert_eq!(p1.set_backup(true, at(30)), None);
    let p3 = BackendHealth::new(&cfg, Arc::clone(&b));
    let t = p3.set_backup(true, at(30)).unwrap();
    assert_eq!((t.from, t.to), (HealthState::Healthy, HealthState::Backup));
    assert_eq!(t.reason, "made a backup");
    assert_eq!(tier(at(30)), Tier::None);
    assert_eq!(Tier::select([p3.view(at(30))]), Tier::Backup);
}

#[test]
fn reconfigure_keeps_state_and_applies_limits() {
    let h = BackendHealth::new(&config(), budget());
    for i in 0..3 {
        h.record_check(false, at(i));
    }
    assert_eq!(h.state(at(3)), HealthState::Unhealthy);
    // Turning active checks off brings it back.
    let mut cfg = config();
    cfg.active = None;
    let t = h.reconfigure(&cfg, at(4)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::Unhealthy, HealthState::Healthy)
    );
    assert_eq!(t.reason, "configuration changed");
    // A lower failure threshold applies at once.
    cfg.outlier = Some(outlier(2, 10, 300, 100));
    assert_eq!(h.reconfigure(&cfg, at(5)), None);
    assert!(fail_n(&h, 2, at(5)).is_some());
    // Turning outlier detection off lets the ejection run out.
    cfg.outlier = None;
    assert_eq!(h.reconfigure(&cfg, at(6)), None);
    assert_eq!(h.state(at(6)), HealthState::Ejected);
    assert_eq!(h.state(at(15)), HealthState::Healthy);
    assert_eq!(fail_n(&h, 50, at(16)), None);
    // Clamping of nonsense values.
    let weird = HealthConfig {
        active: Some(ActiveThresholds {
            healthy_threshold: 0,
            unhealthy_threshold: 0,
        }),
        outlier: Some(OutlierConfig {
            consecutive_failures: 0,
            base_ejection_time: Duration::ZERO,
            max_ejection_time: Duration::ZERO,
            max_ejection_percent: 1000,
        }),
        slow_start: Some(SlowStartConfig {
            duration: Duration::from_secs(1),
            aggression: f64::NAN,
            min_factor: f64::NAN,
        }),
    };
    let h = BackendHealth::joining(&weird, budget(), at(0));
    assert!((h.weight_factor(at_ms(500)) - 0.5).abs() < 1e-6);
    assert!(h.record_failure(FailureKind::Connect, at(2)).is_some());
    assert_eq!(h.ejected_until(at(2)), Some(Nanos(2 * S + 1_000_000)));
    // The 1 ms ejection is over; one failing check takes it out.
    let t = h.record_check(false, at(3)).unwrap();
    assert_eq!(t.to, HealthState::Unhealthy);
    let t = h.record_check(true, at(4)).unwrap();
    assert_eq!(t.to, HealthState::SlowStart);
}

#[test]
fn events_without_a_change_leave_time_transitions_to_poll() {
    let mut cfg = config();
    cfg.slow_start = Some(SlowStartConfig::linear(Duration::from_secs(10)));
    let h = BackendHealth::joining(&cfg, budget(), at(0));
    // The ramp ends at 10 s; a check at 11 s changes nothing by itself.
    assert_eq!(h.record_check(true, at(11)), None);
    h.record_success();
    let t = h.poll(at(11)).unwrap();
    assert_eq!(
        (t.from, t.to),
        (HealthState::SlowStart, HealthState::Healthy)
    );
    assert_eq!(h.poll(at(12)), None);
}
