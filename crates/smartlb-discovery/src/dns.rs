//! `kind = "dns"`: a name's A, AAAA or SRV records, resolved again every `refresh`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use smartlb_config::{BackendAddress, BackendConfig, DnsDiscovery, DnsRecord};
use tokio::time::MissedTickBehavior;

use crate::DiscoveryOptions;
use crate::change::normalize;
use crate::error::DiscoveryError;
use crate::handle::{DiscoveryHandle, Publisher, spawn};

/// Starts following `dns` for `upstream`.
pub(crate) fn start(
    upstream: &str,
    dns: &DnsDiscovery,
    options: &DiscoveryOptions,
) -> Result<DiscoveryHandle, DiscoveryError> {
    let port = match (dns.record, dns.port) {
        (DnsRecord::Srv, _) => None,
        (_, Some(port)) if port != 0 => Some(port),
        (record, _) => {
            return Err(DiscoveryError::Invalid {
                upstream: upstream.to_string(),
                reason: format!("a DNS {} lookup needs a backend `port`", record.as_str()),
            });
        }
    };
    if dns.refresh.is_zero() {
        return Err(DiscoveryError::Invalid {
            upstream: upstream.to_string(),
            reason: "the DNS `refresh` interval must be greater than zero".to_string(),
        });
    }
    let name = Name::from_ascii(&dns.name).map_err(|e| DiscoveryError::Invalid {
        upstream: upstream.to_string(),
        reason: format!("invalid DNS name {:?}: {e}", dns.name),
    })?;
    // Resolver construction spawns nothing, but the resolver needs a runtime later: fail
    // early and clearly when there is none.
    tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
    let resolver = build_resolver(upstream, &dns.resolvers, options)?;
    let (publisher, set_rx, status_rx) = Publisher::new();
    let source = DnsSource {
        upstream: upstream.to_string(),
        name,
        record: dns.record,
        port,
        resolver,
        publisher,
    };
    let task = spawn(source.run(dns.refresh))?;
    Ok(DiscoveryHandle::task(
        upstream, "dns", set_rx, status_rx, task,
    ))
}

fn build_resolver(
    upstream: &str,
    servers: &[SocketAddr],
    options: &DiscoveryOptions,
) -> Result<TokioResolver, DiscoveryError> {
    let mut builder = if servers.is_empty() {
        Resolver::builder_tokio().map_err(|e| DiscoveryError::SystemResolver {
            upstream: upstream.to_string(),
            source: Box::new(e),
        })?
    } else {
        let name_servers = servers
            .iter()
            .map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            })
            .collect();
        Resolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(ResolverOpts::default())
    };
    let opts = builder.options_mut();
    opts.timeout = options.dns_timeout;
    opts.attempts = options.dns_attempts;
    builder.build().map_err(|e| DiscoveryError::Invalid {
        upstream: upstream.to_string(),
        reason: format!("cannot build the DNS resolver: {e}"),
    })
}

struct DnsSource {
    upstream: String,
    name: Name,
    record: DnsRecord,
    port: Option<u16>,
    resolver: TokioResolver,
    publisher: Publisher,
}

impl DnsSource {
    async fn run(self, refresh: std::time::Duration) {
        let mut ticker = tokio::time::interval(refresh);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticker.tick().await;
            // Every round asks the servers again: `refresh` is the operator's answer to
            // "how stale may the set be", whatever TTL the records carry.
            self.resolver.clear_cache();
            match self.resolve().await {
                Ok(set) => {
                    if failing {
                        tracing::info!(
                            upstream = %self.upstream,
                            name = %self.name,
                            backends = set.len(),
                            "DNS discovery resolves again"
                        );
                        failing = false;
                    }
                    let count = set.len();
                    if self.publisher.publish(set, None) {
                        tracing::info!(
                            upstream = %self.upstream,
                            name = %self.name,
                            backends = count,
                            "DNS discovery: backend set changed"
                        );
                    }
                }
                Err(error) => {
                    if failing {
                        tracing::debug!(
                            upstream = %self.upstream,
                            name = %self.name,
                            %error,
                            "DNS lookup still failing"
                        );
                    } else {
                        tracing::warn!(
                            upstream = %self.upstream,
                            name = %self.name,
                            %error,
                            kept = self.publisher.len(),
                            "DNS lookup failed; keeping the last known backends"
                        );
                        failing = true;
                    }
                    self.publisher.failed(error);
                }
            }
        }
    }

    /// One round of lookups. An empty answer is a failure too: an upstream is never
    /// emptied by a name that stopped resolving.
    async fn resolve(&self) -> Result<Vec<BackendConfig>, String> {
        let set = match self.record {
            DnsRecord::A | DnsRecord::Aaaa => self.resolve_addresses().await?,
            DnsRecord::Srv => self.resolve_srv().await?,
        };
        if set.is_empty() {
            return Err(format!(
                "{} {} has no usable records",
                self.name,
                self.record.as_str()
            ));
        }
        Ok(normalize(set))
    }

    async fn resolve_addresses(&self) -> Result<Vec<BackendConfig>, String> {
        let (record_type, port) = match (self.record, self.port) {
            (DnsRecord::Aaaa, Some(port)) => (RecordType::AAAA, port),
            (_, Some(port)) => (RecordType::A, port),
            (_, None) => return Err("no port for address records".to_string()),
        };
        let lookup = self
            .resolver
            .lookup(self.name.clone(), record_type)
            .await
            .map_err(|e| format!("{} {}: {e}", self.name, self.record.as_str()))?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) if record_type == RecordType::A => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) if record_type == RecordType::AAAA => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .map(|ip| BackendConfig::new(BackendAddress::from(SocketAddr::new(ip, port))))
            .collect())
    }

    /// SRV records: each target resolved to its addresses (from the answer's additional
    /// section when the server sent them, else by a lookup). The lowest priority present
    /// gives the primaries, higher priorities become backups; the SRV weight becomes the
    /// backend weight (0 counts as 1, at most 1000). A target that does not resolve
    /// fails the whole round, so the last complete set stays.
    async fn resolve_srv(&self) -> Result<Vec<BackendConfig>, String> {
        let lookup = self
            .resolver
            .lookup(self.name.clone(), RecordType::SRV)
            .await
            .map_err(|e| format!("{} SRV: {e}", self.name))?;
        let srvs: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) if !srv.target.is_root() && srv.port != 0 => Some(srv.clone()),
                _ => None,
            })
            .collect();
        let Some(best) = srvs.iter().map(|s| s.priority).min() else {
            return Ok(Vec::new());
        };
        let mut glue: BTreeMap<Name, Vec<IpAddr>> = BTreeMap::new();
        for record in lookup.additionals() {
            let ip = match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => continue,
            };
            glue.entry(record.name.to_lowercase()).or_default().push(ip);
        }
        let mut set = Vec::new();
        for srv in &srvs {
            let target = srv.target.to_lowercase();
            let ips = match glue.get(&target) {
                Some(ips) => ips.clone(),
                None => {
                    let found = self
                        .resolver
                        .lookup_ip(target.clone())
                        .await
                        .map_err(|e| format!("SRV target {target}: {e}"))?;
                    found.iter().collect()
                }
            };
            if ips.is_empty() {
                return Err(format!("SRV target {target} has no addresses"));
            }
            for ip in ips {
                let mut backend =
                    BackendConfig::new(BackendAddress::from(SocketAddr::new(ip, srv.port)));
                backend.weight = u32::from(srv.weight)
                    .clamp(BackendConfig::MIN_WEIGHT, BackendConfig::MAX_WEIGHT);
                backend.backup = srv.priority != best;
                set.push(backend);
            }
        }
        // Several records can lead to one address: keep the most preferred.
        set.sort_by(|a, b| {
            (a.backup, std::cmp::Reverse(a.weight)).cmp(&(b.backup, std::cmp::Reverse(b.weight)))
        });
        Ok(set)
    }
}
