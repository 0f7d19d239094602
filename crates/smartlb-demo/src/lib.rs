//! The pieces of `smartlb demo`, and controllable loopback backends for tests.
//!
//! `smartlb demo` shows what the balancer does without any set-up: it starts a few
//! backends inside the process, puts the proxy in front of them, sends steady load
//! through it, and redraws a terminal view every second while one backend slows down
//! and another crashes and comes back. This crate holds everything in that picture
//! except the proxy itself, and depends on no other smartlb crate:
//!
//! - [`DemoBackend`] ([`backend`]): a real HTTP/1.1 and h2c server on a loopback port
//!   whose latency, error rate, health endpoint, black hole and crash/recover are
//!   controlled at run time through a cheap cloneable [`DemoBackendHandle`]. Crashing
//!   closes the listener and resets every open connection, like a killed process;
//!   recovering listens on the same port again. Integration tests use it as a
//!   controllable upstream.
//! - [`DemoPlan`] ([`plan`]): the story, as actions at fractions of the run
//!   (`degrading` slows from 25% of the run, `flaky` crashes at 40% and recovers at
//!   65%), played against backend handles with human-readable [`PlanEvent`]s.
//! - [`LoadGenerator`] ([`load`]): open-loop HTTP load at a target rate with bounded
//!   concurrency and keep-alive connections, recording status, latency (from the
//!   scheduled send time, so a slow target cannot hide its latency) and which backend
//!   answered, as per-interval [`LoadSnapshot`]s.
//! - [`LiveView`] ([`view`]): renders a [`ViewData`] frame (traffic share, rates,
//!   latency and state per backend, recent events) as plain text or with ANSI colours.
//!
//! Everything runs on loopback and stops when told to (or when dropped): backends
//! reset their connections, the load generator's loops end on its stop signal, and the
//! plan ends when its duration has passed.
//!
//! # Example
//!
//! A backend answering through a raw TCP connection, then crashing and recovering on
//! the same port:
//!
//! ```
//! use std::time::Duration;
//! use smartlb_demo::{DemoBackend, DemoBackendOptions, Latency};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::TcpStream;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = DemoBackendOptions::default().with_latency(Latency::fixed(Duration::from_millis(2)));
//! let backend = DemoBackend::start("fast", options).await?;
//!
//! let mut conn = TcpStream::connect(backend.addr()).await?;
//! conn.write_all(b"GET / HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n").await?;
//! let mut answer = String::new();
//! conn.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK"));
//! assert!(answer.contains("x-backend: fast"));
//!
//! backend.crash();
//! assert!(TcpStream::connect(backend.addr()).await.is_err());
//! backend.recover().await?;
//! assert!(TcpStream::connect(backend.addr()).await.is_ok());
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod error;
mod histogram;
pub mod load;
pub mod plan;
mod rng;
pub mod view;

pub use backend::{
    BACKEND_HEADER, BackendStats, DemoBackend, DemoBackendHandle, DemoBackendOptions, Latency,
};
pub use error::DemoError;
pub use load::{BackendLoad, LoadGenerator, LoadOptions, LoadSnapshot};
pub use plan::{Action, BackendSpec, DEFAULT_DURATION, DemoPlan, PlanEvent, TimedAction};
pub use view::{BackendRow, LiveView, ViewData, ViewMode};
