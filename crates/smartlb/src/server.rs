//! Running the proxy: listeners, the admin server and the background tasks, started
//! together and stopped together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use smartlb_config::Config;
use smartlb_proxy::ServerOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::RunError;
use crate::proxy::Proxy;

/// A running proxy: its listeners, admin server and background tasks.
///
/// Dropping it stops accepting at once (in-flight requests still finish on their own
/// tasks); call [`Running::shutdown`] to wait for them.
#[derive(Debug)]
#[must_use = "dropping a Running stops the proxy"]
pub struct Running {
    proxy: Proxy,
    listen: Vec<SocketAddr>,
    admin: SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    background: Vec<JoinHandle<()>>,
}

/// Server options from the `[server]` table.
pub fn server_options(config: &Config) -> ServerOptions {
    let s = &config.server;
    ServerOptions {
        header_read_timeout: s.header_read_timeout,
        idle_timeout: s.idle_timeout,
        request_timeout: s.request_timeout,
        max_header_bytes: s.max_header_bytes,
        max_connections: s.max_connections,
        shutdown_grace: s.shutdown_grace,
    }
}

/// Builds the proxy for `config`, binds every listener and the admin address, and starts
/// serving and the background tasks (health checks, statistics).
///
/// # Errors
///
/// The configuration cannot be built into a proxy, or an address cannot be bound.
pub async fn start(config: &Config) -> Result<Running, RunError> {
    // Install the recorder before any backend creates its metric handles.
    let _ = metrics_handle();
    let (config, sources) = crate::discovery::resolve(config).await?;
    let config = &config;
    let proxy = Proxy::from_config(config)?;
    let followers = crate::discovery::follow(&proxy, sources);
    let mut listeners = Vec::with_capacity(config.server.listen.len());
    for &address in &config.server.listen {
        listeners.push(bind(address).await?);
    }
    let admin_listener = bind(config.admin.listen).await?;
    let mut running = start_with(proxy, config, listeners, admin_listener)?;
    running.background.extend(followers);
    Ok(running)
}

/// Like [`start`], over a proxy and listeners the caller made.
///
/// # Errors
///
/// A listener whose local address cannot be read.
pub fn start_with(
    proxy: Proxy,
    config: &Config,
    listeners: Vec<TcpListener>,
    admin_listener: TcpListener,
) -> Result<Running, RunError> {
    let (stop, stopped) = watch::channel(false);
    let options = server_options(config);
    let mut listen = Vec::with_capacity(listeners.len());
    let mut servers = Vec::with_capacity(listeners.len() + 1);
    for listener in listeners {
        listen.push(listener.local_addr().map_err(RunError::Serve)?);
        let service = proxy.clone();
        let stopped = stopped.clone();
        servers.push(tokio::spawn(smartlb_proxy::serve(
            listener,
            service,
            options.clone(),
            wait_stop(stopped),
        )));
    }
    let admin = admin_listener.local_addr().map_err(RunError::Serve)?;
    let source: Arc<dyn smartlb_admin::AdminSource> = Arc::new(proxy.clone());
    let mut admin_server = smartlb_admin::AdminServer::new(source)
        .with_control(Arc::new(proxy.clone()))
        .with_token(config.admin.token.clone());
    if let Some(handle) = metrics_handle() {
        admin_server = admin_server.with_metrics(handle);
    }
    servers.push(tokio::spawn(
        admin_server.serve(admin_listener, wait_stop(stopped.clone())),
    ));
    let background = crate::background::spawn(&proxy, stopped);
    tracing::info!(listen = ?listen, %admin, "smartlb is serving");
    Ok(Running {
        proxy,
        listen,
        admin,
        stop,
        servers,
        background,
    })
}

/// The process's Prometheus recorder, installed on first use. `None` (and a warning) when
/// another `metrics` recorder was installed by an embedding application.
fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    match smartlb_admin::metrics::install() {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::warn!(%error, "Prometheus metrics are not available");
            None
        }
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, RunError> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|source| RunError::Bind { address, source })?;
    socket
        .set_reuseaddr(true)
        .map_err(|source| RunError::Bind { address, source })?;
    socket
        .bind(address)
        .map_err(|source| RunError::Bind { address, source })?;
    socket
        .listen(4096)
        .map_err(|source| RunError::Bind { address, source })
}

async fn wait_stop(mut stopped: watch::Receiver<bool>) {
    // Resolves when `true` is sent, or when the sender is gone.
    let _ = stopped.wait_for(|s| *s).await;
}

impl Running {
    /// The proxy being served.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The addresses the proxy listens on (with the real port when 0 was configured).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Runs until `signal` resolves, then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// A listener failed while serving.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), RunError> {
        signal.await;
        self.shutdown().await
    }

    /// Stops accepting, lets in-flight requests finish (up to `server.shutdown_grace`),
    /// stops the background tasks and returns.
    ///
    /// # Errors
    ///
    /// A listener had failed while serving.
    pub async fn shutdown(self) -> Result<(), RunError> {
        let _ = self.stop.send(true);
        let mut result = Ok(());
        for server in self.servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => result = Err(RunError::Serve(error)),
                Err(join) => {
                    result = Err(RunError::Serve(std::io::Error::other(join.to_string())));
                }
            }
        }
        for task in self.background {
            task.abort();
        }
        result
    }
}

/// Runs the proxy for `config` until `signal` resolves, then shuts down gracefully.
///
/// # Errors
///
/// See [`start`] and [`Running::shutdown`].
pub async fn run(config: &Config, signal: impl Future<Output = ()>) -> Result<(), RunError> {
    start(config).await?.run_until(signal).await
}

/// Runs the proxy configured by the file at `path` until `signal` resolves, reloading the
/// file on SIGHUP and on `POST /api/v1/reload`.
///
/// # Errors
///
/// See [`start`] and [`Running::shutdown`].
pub async fn run_file(
    config: &Config,
    path: &std::path::Path,
    signal: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let running = start(config).await?;
    running.proxy().set_config_source(path);
    crate::reload::spawn_sighup(running.proxy().clone());
    running.run_until(signal).await
}
