//! Graceful shutdown: a request in flight when shutdown starts still gets its answer,
//! while new connections are refused; and the binary stops on SIGTERM with exit code 0
//! after letting its in-flight request finish.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{backend, client, get, one_upstream, proxy_addr, within};
use http::StatusCode;
use tokio::net::TcpStream;

/// Waits until connecting to `addr` is refused, bounded by `limit`.
async fn wait_refused(addr: SocketAddr, limit: Duration) {
    within(limit, "the listener to close", async {
        loop {
            match TcpStream::connect(addr).await {
                Err(_) => return,
                Ok(conn) => {
                    drop(conn);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_and_new_connections_are_refused() {
    let slow = backend("slow", 500).await;
    let running = common::start_proxy(&one_upstream("round-robin", &[(slow.addr(), 1)], "")).await;
    let addr = proxy_addr(&running);

    let in_flight = tokio::spawn(async move { get(&client(), addr, "/").await });
    common::eventually(
        Duration::from_secs(5),
        "the request reaches the backend",
        || slow.in_flight() == 1,
    )
    .await;

    let shutting_down = Instant::now();
    let shutdown = tokio::spawn(running.shutdown());
    wait_refused(addr, Duration::from_secs(2)).await;
    assert!(
        !in_flight.is_finished(),
        "the slow request ended before the listener closed"
    );

    let answer = within(Duration::from_secs(5), "the in-flight request", in_flight)
        .await
        .expect("request task");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.backend(), "slow");
    within(Duration::from_secs(5), "shutdown to return", shutdown)
        .await
        .expect("shutdown task")
        .expect("clean shutdown");
    // Shutdown waited for the request rather than cutting it off (and did not wait for
    // the whole 30 s grace period either).
    let took = shutting_down.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_no_traffic_is_prompt() {
    let a = backend("a", 0).await;
    let running = common::start_proxy(&one_upstream("round-robin", &[(a.addr(), 1)], "")).await;
    let addr = proxy_addr(&running);
    let admin = running.admin_addr();
    // An idle keep-alive connection must not hold the shutdown up for the grace period.
    let client = client();
    assert_eq!(get(&client, addr, "/").await.status, StatusCode::OK);
    let started = Instant::now();
    common::stop(running).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "proxy still accepting"
    );
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "admin still accepting"
    );
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The proxy address in the binary's "smartlb is serving listen=[ADDR, ...]" log line.
fn serving_addr(line: &str) -> Option<SocketAddr> {
    let line = strip_ansi(line);
    if !line.contains("smartlb is serving") {
        return None;
    }
    let rest = &line[line.find("listen=[")? + "listen=[".len()..];
    let end = rest.find([',', ']'])?;
    rest[..end].trim().parse().ok()
}

/// Kills the child if the test fails before it exits.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut()
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_stops_gracefully_on_sigterm() {
    let slow = backend("slow", 500).await;
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_grace = "10s"

[admin]
listen = "127.0.0.1:0"

[log]
level = "info"
format = "text"

[[upstream]]
name = "web"
algorithm = "round-robin"
backends = ["{}"]
"#,
        slow.addr()
    );
    let file =
        std::env::temp_dir().join(format!("smartlb-itest-sigterm-{}.toml", std::process::id()));
    std::fs::write(&file, config).expect("write the configuration");

    let child = Command::new(env!("CARGO_BIN_EXE_smartlb"))
        .arg("run")
        .arg("-c")
        .arg(&file)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smartlb run");
    let mut reaper = Reaper(Some(child));
    let child = reaper.0.as_mut().expect("child");
    let pid = child.id();

    // Read the log on a thread; the first "serving" line gives the port.
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(line) => {
                let found = serving_addr(&line);
                log.push(line);
                if let Some(addr) = found {
                    break addr;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(e) => panic!("no serving line ({e:?}); log so far: {log:#?}"),
        }
    };

    // A request works, then one is in flight when SIGTERM arrives.
    let http = client();
    let answer = get(&http, addr, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    let in_flight = tokio::spawn(async move { get(&client(), addr, "/").await });
    common::eventually(
        Duration::from_secs(5),
        "the request reaches the backend",
        || slow.in_flight() == 1,
    )
    .await;
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(killed.success());

    let answer = within(Duration::from_secs(5), "the in-flight request", in_flight)
        .await
        .expect("request task");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "smartlb did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while let Ok(line) = lines_rx.try_recv() {
        log.push(line);
    }
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?}; log: {log:#?}"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is still open after exit"
    );
}
