//! smartlb as a library: an `Upstream` and a `Proxy` mounted inside an axum `Router`
//! served on loopback, and `Balance<S>` over plain `tower::service_fn` services
//! (traffic reaches both, a failing service's errors come back as `BalanceError`, and
//! outlier detection takes it out).

mod common;

use std::io;
use std::time::Duration;

use axum::Router;
use axum::routing::get as axum_get;
use common::{Tally, backend, client, get, within};
use http::StatusCode;
use smartlb::algorithms::Algorithm;
use smartlb::{Balance, BalanceError, Proxy, Upstream};
use smartlb_health::{HealthConfig, OutlierConfig};
use tower::{Service, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_and_proxy_mounted_in_axum() {
    let one = backend("one", 0).await;
    let two = backend("two", 0).await;
    let api = Upstream::builder("api")
        .algorithm(smartlb::config::Algorithm::RoundRobin)
        .backend(one.addr(), 1)
        .backend(two.addr(), 1)
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("upstream");
    let other = Upstream::builder("other")
        .algorithm(smartlb::config::Algorithm::RoundRobin)
        .backend(two.addr(), 1)
        .build()
        .expect("upstream");
    let proxy = Proxy::from_upstreams(vec![other], &[], false).expect("proxy");

    let app = Router::new()
        .route("/", axum_get(|| async { "the application itself" }))
        .route_service("/api/{*rest}", api.clone())
        .nest_service("/whole", proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let client = client();
    // The application's own route.
    let answer = get(&client, addr, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "the application itself");
    assert_eq!(answer.backend(), "");

    // `/api/*` through the upstream: round-robin over both backends.
    let mut tally = Tally::default();
    for i in 0..20 {
        let answer = get(&client, addr, &format!("/api/item/{i}")).await;
        assert!(
            answer.text().starts_with("hello from "),
            "{}",
            answer.text()
        );
        tally.add(&answer);
    }
    assert_eq!(tally.count("one"), 10, "{tally:?}");
    assert_eq!(tally.count("two"), 10, "{tally:?}");
    assert_eq!(one.requests() + two.requests(), 20);

    // A whole `Proxy` nested under `/whole`.
    let answer = get(&client, addr, "/whole/x").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.backend(), "two");

    // The upstream's statistics saw the traffic.
    let set = api.endpoints();
    let total: u64 = set
        .endpoints()
        .iter()
        .map(|e| e.stats().requests_total())
        .sum();
    assert_eq!(total, 20);

    // A crashed backend: the upstream retries on the other one, the app never sees it.
    one.crash();
    for i in 0..6 {
        let answer = get(&client, addr, &format!("/api/after-crash/{i}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.backend(), "two");
    }

    let _ = stop.send(());
    within(Duration::from_secs(10), "axum to stop", server)
        .await
        .expect("server task")
        .expect("axum serve");
}

fn ok_service(
    name: &'static str,
) -> impl Service<u32, Response = String, Error = io::Error, Future: Send> + Clone + Send + Sync + 'static
{
    tower::service_fn(move |req: u32| async move { Ok::<_, io::Error>(format!("{name}:{req}")) })
}

fn failing_service()
-> impl Service<u32, Response = String, Error = io::Error, Future: Send> + Clone + Send + Sync + 'static
{
    tower::service_fn(|_req: u32| async { Err::<String, _>(io::Error::other("boom")) })
}

#[tokio::test]
async fn balance_spreads_over_services() {
    let mut balance = Balance::new(
        Algorithm::RoundRobin,
        HealthConfig::default(),
        vec![
            ("a".to_string(), 1, ok_service("a")),
            ("b".to_string(), 1, ok_service("b")),
        ],
    );
    let (mut a, mut b) = (0, 0);
    for i in 0..20 {
        let answer = balance
            .ready()
            .await
            .expect("ready")
            .call(i)
            .await
            .expect("answer");
        assert!(answer.ends_with(&format!(":{i}")), "{answer}");
        match &answer[..1] {
            "a" => a += 1,
            "b" => b += 1,
            other => panic!("unknown service {other}"),
        }
    }
    assert_eq!((a, b), (10, 10));
    let set = balance.endpoints();
    let in_flight: u64 = set.endpoints().iter().map(|e| e.stats().in_flight()).sum();
    assert_eq!(in_flight, 0);
}

#[tokio::test]
async fn balance_reports_endpoint_errors_and_ejects_the_failing_one() {
    let health = HealthConfig {
        outlier: Some(OutlierConfig {
            consecutive_failures: 3,
            base_ejection_time: Duration::from_secs(60),
            max_ejection_time: Duration::from_secs(60),
            max_ejection_percent: 50,
        }),
        ..HealthConfig::default()
    };
    // Boxed so that both endpoints have one type.
    let ok = tower::util::BoxCloneSyncService::new(ok_service("good"));
    let bad = tower::util::BoxCloneSyncService::new(failing_service());
    let mut balance = Balance::new(
        Algorithm::RoundRobin,
        health,
        vec![("good".to_string(), 1, ok), ("bad".to_string(), 1, bad)],
    );

    let mut errors = 0;
    let mut successes = 0;
    for i in 0..40 {
        match balance.ready().await.expect("ready").call(i).await {
            Ok(answer) => {
                assert!(answer.starts_with("good:"));
                successes += 1;
            }
            Err(BalanceError::Endpoint { address, source }) => {
                assert_eq!(address, "bad");
                assert_eq!(source.to_string(), "boom");
                errors += 1;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    // Three failures eject `bad`; everything after goes to `good`.
    assert_eq!(errors, 3, "errors {errors}, successes {successes}");
    assert_eq!(successes, 37);
}

#[tokio::test]
async fn balance_without_endpoints_says_so() {
    let mut balance = Balance::new(
        Algorithm::RoundRobin,
        HealthConfig::default(),
        Vec::<(
            String,
            u32,
            tower::util::BoxCloneSyncService<u32, String, io::Error>,
        )>::new(),
    );
    let result = balance.ready().await.expect("ready").call(1).await;
    assert!(
        matches!(result, Err(BalanceError::NoEndpoint)),
        "{result:?}"
    );
}
