//! Routing: which upstream a request goes to, by host and path prefix, with weighted splits.

use std::collections::HashMap;

use http::Request;
use smartlb_balance::Rng;
use smartlb_config::{HostMatch, RouteConfig};

use crate::error::BuildError;
use crate::set::with_rng;
use crate::upstream::Upstream;

/// Routes requests to upstreams.
///
/// Routes are tried in configuration order; the first whose host and path prefix both
/// match wins. A route with several targets splits requests at random in proportion to
/// their weights. Without routes, every request goes to the first upstream. A request no
/// route matches gets `404` with `x-smartlb-error: no-route`.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    default: Option<Upstream>,
}

#[derive(Debug, Clone)]
struct Route {
    host: Option<HostMatch>,
    path_prefix: Option<String>,
    targets: Vec<(Upstream, u32)>,
    total_weight: u64,
}

impl Router {
    /// Builds the routing table over already built `upstreams`.
    ///
    /// # Errors
    ///
    /// A route naming an upstream that is not in `upstreams` (the configuration validator
    /// catches this first; this is a guard for embedders building by hand).
    pub fn new(routes: &[RouteConfig], upstreams: &[Upstream]) -> Result<Self, BuildError> {
        let by_name: HashMap<&str, &Upstream> = upstreams.iter().map(|u| (u.name(), u)).collect();
        let mut built = Vec::with_capacity(routes.len());
        for route in routes {
            let mut targets = Vec::with_capacity(route.targets.len());
            for target in &route.targets {
                let upstream = by_name
                    .get(target.upstream.as_str())
                    .ok_or_else(|| BuildError::UnknownUpstream(target.upstream.clone()))?;
                targets.push(((*upstream).clone(), target.weight));
            }
            let total_weight = targets.iter().map(|(_, w)| u64::from(*w)).sum();
            built.push(Route {
                host: route.host.clone(),
                path_prefix: route.path_prefix.clone(),
                targets,
                total_weight,
            });
        }
        Ok(Self {
            default: if routes.is_empty() {
                upstreams.first().cloned()
            } else {
                None
            },
            routes: built,
        })
    }

    /// The upstream for `req`, or `None` when no route matches.
    pub fn route<B>(&self, req: &Request<B>) -> Option<&Upstream> {
        if let Some(default) = &self.default {
            return Some(default);
        }
        let host = request_host(req);
        let path = req.uri().path();
        let route = self.routes.iter().find(|r| {
            r.host
                .as_ref()
                .is_none_or(|h| host.is_some_and(|host| h.matches(host)))
                && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })?;
        if route.targets.len() == 1 || route.total_weight == 0 {
            return route.targets.first().map(|(u, _)| u);
        }
        let mut point = with_rng(|rng| rng.next_u64()) % route.total_weight;
        for (upstream, weight) in &route.targets {
            let weight = u64::from(*weight);
            if point < weight {
                return Some(upstream);
            }
            point -= weight;
        }
        route.targets.last().map(|(u, _)| u)
    }
}

/// The host the client asked for, without a port: the `Host` header, or the URI's authority
/// (HTTP/2).
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    let raw = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    Some(strip_port(raw))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
