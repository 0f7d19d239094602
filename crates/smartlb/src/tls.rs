//! TLS in the facade: the listeners' certificates (`[server.tls]`), and clients and
//! health checks for `https://` backends (`[upstream.tls]`).

use std::net::SocketAddr;

use smartlb_config::{BackendAddress, Scheme, ServerConfig, UpstreamConfig};
use smartlb_health::CheckTarget;
use smartlb_proxy::tls::{
    ClientTls, ClientTlsOptions, ServerTls, TlsError, client_config, server_name,
};
use smartlb_proxy::{BackendClient, ClientOptions};

use crate::error::BuildError;

/// The listeners' TLS settings from `[server.tls]`, `None` without the table.
///
/// # Errors
///
/// The certificate or key cannot be loaded.
pub(crate) fn server_tls(server: &ServerConfig) -> Result<Option<ServerTls>, BuildError> {
    let Some(tls) = &server.tls else {
        return Ok(None);
    };
    ServerTls::load(&tls.cert, &tls.key)
        .map(Some)
        .map_err(|source| BuildError::Tls {
            what: "[server.tls]".to_owned(),
            source,
        })
}

/// The TLS settings of an `https://` backend of `upstream` at `address`.
fn client_tls(upstream: &UpstreamConfig, address: &BackendAddress) -> Result<ClientTls, TlsError> {
    let settings = upstream.tls.clone().unwrap_or_default();
    let options = ClientTlsOptions {
        ca: settings.ca,
        client_cert: settings.cert.zip(settings.key),
        server_name: settings.server_name.clone(),
        h2: upstream.protocol == smartlb_config::UpstreamProtocol::H2,
    };
    let name = server_name(settings.server_name.as_deref().unwrap_or(&address.host))?;
    Ok(ClientTls::new(client_config(&options)?, name))
}

/// Checks that every `https://` backend of `upstream` gets its TLS settings (files
/// readable, certificates valid), so that a bad file stops start-up or a reload.
///
/// # Errors
///
/// The first backend whose settings cannot be built.
pub(crate) fn check_upstream(upstream: &UpstreamConfig) -> Result<(), BuildError> {
    let https = upstream
        .backends
        .iter()
        .find(|b| b.address.scheme == Scheme::Https);
    if let Some(backend) = https {
        client_tls(upstream, &backend.address).map_err(|source| BuildError::Tls {
            what: format!("upstream `{}`: [upstream.tls]", upstream.name),
            source,
        })?;
    }
    Ok(())
}

fn parse(address: &str) -> std::io::Result<BackendAddress> {
    address.parse().map_err(|e: smartlb_config::AddressError| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    })
}

fn resolve(authority: &str) -> std::io::Result<SocketAddr> {
    std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name resolved to no address",
            )
        })
}

/// The client of the backend configured as `address` (`host:port` or `https://...`),
/// over TLS for `https://` backends.
///
/// # Errors
///
/// The address does not parse or resolve, or its TLS settings cannot be built.
pub(crate) fn backend_client(
    address: &str,
    options: &ClientOptions,
    upstream: &UpstreamConfig,
) -> std::io::Result<BackendClient> {
    let parsed = parse(address)?;
    let addr = match parsed.socket_addr() {
        Some(addr) => addr,
        None => resolve(&parsed.authority())?,
    };
    let mut options = options.clone();
    if parsed.scheme == Scheme::Https {
        options.tls = Some(client_tls(upstream, &parsed).map_err(std::io::Error::other)?);
    }
    Ok(BackendClient::new(addr, options))
}

/// The health-check target of the backend configured as `address`: over TLS for
/// `https://` backends, named (and `Host`-addressed) as configured.
pub(crate) async fn check_target(address: &str, upstream: &UpstreamConfig) -> Option<CheckTarget> {
    let parsed = parse(address).ok()?;
    let addr = match parsed.socket_addr() {
        Some(addr) => addr,
        None => tokio::net::lookup_host(parsed.authority())
            .await
            .ok()?
            .next()?,
    };
    let mut target = CheckTarget::new(addr).with_host(address);
    target.http2 = upstream.protocol == smartlb_config::UpstreamProtocol::H2;
    if parsed.scheme == Scheme::Https {
        return client_tls(upstream, &parsed)
            .ok()
            .map(|tls| target.with_tls(tls));
    }
    Some(target)
}
