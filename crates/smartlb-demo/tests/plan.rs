//! The demo story played against real backends, on a paused clock.

use std::time::Duration;

use smartlb_demo::{Action, BackendSpec, DemoError, DemoPlan, Latency, PlanEvent, TimedAction};

#[tokio::test(start_paused = true)]
async fn default_story_over_twenty_seconds() {
    let plan = DemoPlan::default_story();
    let backends = plan.start_backends().await.unwrap();
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    assert_eq!(names, ["fast", "medium", "degrading", "flaky"]);
    let handles: Vec<_> = backends.iter().map(|b| b.handle()).collect();
    let flaky = handles[3].clone();
    let degrading = handles[2].clone();
    assert_eq!(degrading.latency(), Latency::from_millis(5, 2));

    let mut events: Vec<(PlanEvent, bool)> = Vec::new();
    let start = tokio::time::Instant::now();
    plan.run(Duration::from_secs(20), &handles, |event| {
        let running = flaky.is_running();
        events.push((event, running));
    })
    .await
    .unwrap();
    // The run lasts its whole duration.
    assert!(start.elapsed() >= Duration::from_secs(20));

    let lines: Vec<String> = events.iter().map(|(e, _)| e.to_string()).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].starts_with("t=5s degrading starts slowing down"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "t=8s flaky crashed");
    assert!(!events[1].1, "flaky is down when its crash is reported");
    assert_eq!(lines[2], "t=13s flaky recovered");
    assert!(events[2].1, "flaky is back when its recovery is reported");
    assert!(
        lines[3].starts_with("t=16s degrading latency reached 300 ms"),
        "{}",
        lines[3]
    );

    assert_eq!(degrading.latency(), Latency::from_millis(300, 30));
    assert!(flaky.is_running());
    assert_eq!(flaky.stats().crashes, 1);
    assert_eq!(handles[0].stats().crashes, 0);
}

#[tokio::test(start_paused = true)]
async fn custom_plan_drives_every_switch() {
    let plan = DemoPlan::new(
        vec![BackendSpec::new("b", Latency::ZERO).described("test backend")],
        vec![
            TimedAction::new(0.1, "b", Action::SetErrorRate(0.5)),
            TimedAction::new(0.2, "b", Action::HealthFailing(true)),
            TimedAction::new(0.3, "b", Action::Blackhole(true)),
            TimedAction::new(0.4, "b", Action::Blackhole(false)),
            TimedAction::new(0.5, "b", Action::SetLatency(Latency::from_millis(7, 0))),
        ],
    )
    .unwrap();
    assert_eq!(plan.backends()[0].description, "test backend");
    let backends = plan.start_backends().await.unwrap();
    let handle = backends[0].handle();
    let mut seen = Vec::new();
    plan.run(
        Duration::from_secs(10),
        std::slice::from_ref(&handle),
        |e| seen.push(e.message),
    )
    .await
    .unwrap();
    assert_eq!(
        seen,
        [
            "error rate set to 50%",
            "health check starts failing",
            "stops answering (black hole)",
            "answers again",
            "latency set to 7 ms",
        ]
    );
    assert_eq!(handle.error_rate(), 0.5);
    assert!(handle.is_health_failing());
    assert!(!handle.is_blackholed());
    assert_eq!(handle.latency(), Latency::from_millis(7, 0));
}

#[tokio::test(start_paused = true)]
async fn run_needs_every_backend_and_a_duration() {
    let plan = DemoPlan::default_story();
    let backends = plan.start_backends().await.unwrap();
    let some: Vec<_> = backends[..2].iter().map(|b| b.handle()).collect();
    let err = plan
        .run(Duration::from_secs(20), &some, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, DemoError::MissingBackend(ref name) if name == "degrading"));
    let all: Vec<_> = backends.iter().map(|b| b.handle()).collect();
    assert!(matches!(
        plan.run(Duration::ZERO, &all, |_| {}).await,
        Err(DemoError::ZeroDuration { .. })
    ));
    // Nothing was changed by the failed runs.
    assert!(backends.iter().all(|b| b.is_running()));
}
