//! Running the proxy: listeners, the admin server and the background tasks, started
//! together and stopped together.
//!
//! The proxy's listeners follow reloads (`Listeners::apply`): each listening socket is
//! served by an accept loop ([`smartlb_proxy::serve`]) that this module can stop on its
//! own. A removed address stops accepting at once while the connections it accepted
//! finish (up to `server.shutdown_grace`); a new one is bound and served; new server
//! timeouts and limits start a new accept loop on the same socket (a duplicate of its
//! descriptor, so no connection waiting in the accept queue is lost) and let the old loop
//! finish its connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use smartlb_config::{Config, ServerConfig};
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
    listeners: Arc<Listeners>,
    admin: SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    background: Vec<JoinHandle<()>>,
}

/// Server options from the `[server]` table.
pub fn server_options(config: &Config) -> ServerOptions {
    options_of(&config.server)
}

fn options_of(s: &ServerConfig) -> ServerOptions {
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
/// serving and the background tasks (health checks, statistics, discovery).
///
/// # Errors
///
/// The configuration cannot be built into a proxy, or an address cannot be bound.
pub async fn start(config: &Config) -> Result<Running, RunError> {
    // Install the recorder before any backend creates its metric handles.
    let _ = metrics_handle();
    let (resolved, sources) = crate::discovery::resolve(config).await?;
    let proxy = Proxy::from_config(&resolved)?;
    // Reloads compare against the file as written (discovery tables included).
    proxy.hooks().set_config(config.clone());
    crate::discovery::follow(&proxy, sources);
    let mut listeners = Vec::with_capacity(config.server.listen.len());
    for &address in &config.server.listen {
        listeners.push(bind(address)?);
    }
    let admin_listener = bind(config.admin.listen)?;
    start_with(proxy, config, listeners, admin_listener)
}

/// Like [`start`], over a proxy and listeners the caller made. The listeners are matched
/// to `config.server.listen` in order, so that a reload knows which address each serves.
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
    let tls = crate::tls::server_tls(&config.server)?;
    let listeners_state = Arc::new(Listeners {
        state: Mutex::new(ListenerState {
            options: options.clone(),
            tls: tls.clone(),
            active: Vec::with_capacity(listeners.len()),
            retired: Vec::new(),
        }),
        stopped: stopped.clone(),
    });
    for (i, listener) in listeners.into_iter().enumerate() {
        let local = listener.local_addr().map_err(RunError::Serve)?;
        let configured = config.server.listen.get(i).copied().unwrap_or(local);
        let socket = listener.into_std().map_err(RunError::Serve)?;
        let active = listeners_state
            .serve(&proxy, configured, local, socket, &options, tls.as_ref())
            .map_err(RunError::Serve)?;
        listeners_state.lock().active.push(active);
    }
    proxy.hooks().set_server(Arc::downgrade(&listeners_state));
    let admin = admin_listener.local_addr().map_err(RunError::Serve)?;
    let source: Arc<dyn smartlb_admin::AdminSource> = Arc::new(proxy.clone());
    let mut admin_server = smartlb_admin::AdminServer::new(source)
        .with_control(Arc::new(proxy.clone()))
        .with_token(config.admin.token.clone());
    if let Some(handle) = metrics_handle() {
        admin_server = admin_server.with_metrics(handle);
    }
    let servers = vec![tokio::spawn(
        admin_server.serve(admin_listener, wait_stop(stopped.clone())),
    )];
    let mut background = crate::background::spawn(&proxy, stopped.clone());
    background.push(crate::split::spawn_canaries(&proxy, stopped));
    let listen = listeners_state.addrs();
    tracing::info!(listen = ?listen, %admin, "smartlb is serving");
    Ok(Running {
        proxy,
        listeners: listeners_state,
        admin,
        stop,
        servers,
        background,
    })
}

/// The proxy's listening sockets and their accept loops, changed by reloads.
#[derive(Debug)]
pub(crate) struct Listeners {
    state: Mutex<ListenerState>,
    /// Turns `true` when the whole server stops.
    stopped: watch::Receiver<bool>,
}

#[derive(Debug)]
struct ListenerState {
    /// The options new accept loops get.
    options: ServerOptions,
    /// The TLS settings of every listener (`[server.tls]`); `None`: plain HTTP.
    tls: Option<smartlb_proxy::tls::ServerTls>,
    active: Vec<Active>,
    /// Accept loops told to stop, finishing their connections.
    retired: Vec<JoinHandle<std::io::Result<()>>>,
}

/// One listening socket and the accept loop serving it.
#[derive(Debug)]
struct Active {
    /// The address as configured (port 0 stays 0).
    configured: SocketAddr,
    /// The address bound.
    local: SocketAddr,
    /// The socket (a descriptor of its own): a new accept loop gets a duplicate.
    socket: std::net::TcpListener,
    /// Stops this accept loop (`true`, or dropped).
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, ListenerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The addresses served now.
    fn addrs(&self) -> Vec<SocketAddr> {
        self.lock().active.iter().map(|a| a.local).collect()
    }

    /// Starts an accept loop on a duplicate of `socket`, stopped by the whole server's
    /// stop or by the returned `Active`'s own.
    fn serve(
        &self,
        proxy: &Proxy,
        configured: SocketAddr,
        local: SocketAddr,
        socket: std::net::TcpListener,
        options: &ServerOptions,
        tls: Option<&smartlb_proxy::tls::ServerTls>,
    ) -> std::io::Result<Active> {
        let listener = TcpListener::from_std(socket.try_clone()?)?;
        let (stop, own) = watch::channel(false);
        let all = self.stopped.clone();
        let stopped = async move {
            tokio::select! {
                () = wait_stop(all) => {}
                () = wait_stop(own) => {}
            }
        };
        let task = match tls {
            None => tokio::spawn(smartlb_proxy::serve(
                listener,
                proxy.service(),
                options.clone(),
                stopped,
            )),
            Some(tls) => tokio::spawn(smartlb_proxy::serve_tls(
                listener,
                tls.clone(),
                proxy.service(),
                options.clone(),
                stopped,
            )),
        };
        Ok(Active {
            configured,
            local,
            socket,
            stop,
            task,
        })
    }

    /// Applies a reloaded `[server]` table: binds new addresses, stops accepting on
    /// removed ones (their connections finish), and gives new options to new accept
    /// loops. Returns a line per change.
    pub(crate) fn apply(&self, proxy: &Proxy, server: &ServerConfig) -> Vec<String> {
        let options = options_of(server);
        let mut changes = Vec::new();
        let mut state = self.lock();
        let old = std::mem::take(&mut state.active);
        let mut kept = Vec::with_capacity(old.len());
        let mut wanted: Vec<SocketAddr> = server.listen.clone();
        for active in old {
            match wanted.iter().position(|w| *w == active.configured) {
                Some(i) => {
                    wanted.remove(i);
                    kept.push(active);
                }
                None => {
                    let _ = active.stop.send(true);
                    changes.push(format!(
                        "stopped listening on {} (accepted connections finish)",
                        active.local
                    ));
                    tracing::info!(address = %active.local, "listener removed; its connections finish");
                    state.retired.push(active.task);
                }
            }
        }
        // Certificates are read again on every reload (the files may have been renewed).
        let mut tls_switched = false;
        match (&state.tls, &server.tls) {
            (Some(current), Some(files)) => match current.reload(&files.cert, &files.key) {
                Ok(()) => changes.push("TLS certificates read again for new connections".into()),
                Err(error) => {
                    tracing::error!(%error, "TLS certificates not reloaded; keeping the current ones");
                    changes.push(format!(
                        "TLS certificates not reloaded ({error}); keeping the current ones"
                    ));
                }
            },
            (None, Some(files)) => {
                match smartlb_proxy::tls::ServerTls::load(&files.cert, &files.key) {
                    Ok(tls) => {
                        state.tls = Some(tls);
                        tls_switched = true;
                        changes.push("listeners now speak TLS to new connections".into());
                    }
                    Err(error) => {
                        tracing::error!(%error, "[server.tls] not applied; listeners stay plain HTTP");
                        changes.push(format!(
                            "[server.tls] not applied ({error}); listeners stay plain HTTP"
                        ));
                    }
                }
            }
            (Some(_), None) => {
                state.tls = None;
                tls_switched = true;
                changes.push("listeners now speak plain HTTP to new connections".into());
            }
            (None, None) => {}
        }
        if options != state.options || tls_switched {
            if options != state.options {
                changes.push(
                    "server timeouts and limits changed: they apply to new connections".to_string(),
                );
            }
            let tls = state.tls.clone();
            let mut renewed = Vec::with_capacity(kept.len());
            for active in kept {
                match active.socket.try_clone().and_then(|socket| {
                    self.serve(
                        proxy,
                        active.configured,
                        active.local,
                        socket,
                        &options,
                        tls.as_ref(),
                    )
                }) {
                    Ok(next) => {
                        let _ = active.stop.send(true);
                        state.retired.push(active.task);
                        renewed.push(next);
                    }
                    Err(error) => {
                        changes.push(format!("{}: keeps its old options: {error}", active.local));
                        renewed.push(active);
                    }
                }
            }
            kept = renewed;
            state.options = options.clone();
        }
        let tls = state.tls.clone();
        for address in wanted {
            let served = bind(address).and_then(|listener| {
                let local = listener.local_addr().map_err(RunError::Serve)?;
                let socket = listener.into_std().map_err(RunError::Serve)?;
                self.serve(proxy, address, local, socket, &options, tls.as_ref())
                    .map_err(RunError::Serve)
            });
            match served {
                Ok(active) => {
                    changes.push(format!("listening on {}", active.local));
                    tracing::info!(address = %active.local, "listener added");
                    kept.push(active);
                }
                Err(error) => changes.push(format!(
                    "not listening on {address}: {}",
                    crate::error_chain(&error)
                )),
            }
        }
        state.retired.retain(|task| !task.is_finished());
        state.active = kept;
        changes
    }

    /// Every accept loop's task, active and retired (at shutdown).
    fn take_tasks(&self) -> Vec<JoinHandle<std::io::Result<()>>> {
        let mut state = self.lock();
        let mut tasks: Vec<_> = std::mem::take(&mut state.retired);
        for active in std::mem::take(&mut state.active) {
            tasks.push(active.task);
        }
        tasks
    }
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

fn bind(address: SocketAddr) -> Result<TcpListener, RunError> {
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

    /// The addresses the proxy listens on now (with the real port when 0 was
    /// configured), in configuration order; a reload may change them.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.addrs()
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
        self.proxy.hooks().stop_followers();
        let mut result = Ok(());
        let mut servers = self.servers;
        servers.extend(self.listeners.take_tasks());
        for server in servers {
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
/// file on SIGHUP, on `POST /api/v1/reload`, and when the file changes (see
/// [`Proxy::watch_config`]; if the file cannot be watched, a warning is logged and the
/// other two ways still work).
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
    let watcher = match running.proxy().watch_config() {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "cannot watch the configuration file; reload with SIGHUP or the admin API");
            None
        }
    };
    let result = running.run_until(signal).await;
    drop(watcher);
    result
}
