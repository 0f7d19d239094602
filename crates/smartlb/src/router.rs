//! Routing: which upstream a request goes to, by host and path prefix, with weighted splits.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::Request;
use smartlb_config::{HostMatch, RouteConfig};

use crate::cache::ResponseCache;
use crate::error::BuildError;
use crate::ratelimit::RateLimit;
use crate::split::Split;
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
    /// The upstreams and their live weights (shared with the canary and the admin API).
    split: Arc<Split>,
    /// The route's rate limit and response cache, when it has either.
    policy: Option<Arc<RoutePolicy>>,
    /// The route as configured, to recognise it across reloads.
    config: RouteConfig,
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
            let split = Split::new(targets, route.canary.as_ref(), route_label(route));
            built.push(Route {
                host: route.host.clone(),
                path_prefix: route.path_prefix.clone(),
                split: Arc::new(split),
                policy: RoutePolicy::new(route).map(Arc::new),
                config: route.clone(),
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
        self.route_with_policy(req).map(|(upstream, _)| upstream)
    }

    /// The upstream for `req` and the matching route's rate limit and cache, or `None`
    /// when no route matches.
    pub(crate) fn route_with_policy<B>(
        &self,
        req: &Request<B>,
    ) -> Option<(&Upstream, Option<&Arc<RoutePolicy>>)> {
        if let Some(default) = &self.default {
            return Some((default, None));
        }
        let host = request_host(req);
        let path = req.uri().path();
        let route = self.routes.iter().find(|r| {
            r.host
                .as_ref()
                .is_none_or(|h| host.is_some_and(|host| h.matches(host)))
                && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })?;
        route.split.pick().map(|u| (u, route.policy.as_ref()))
    }
}

impl Router {
    /// Carries over from `old` the live state of every route configured exactly as
    /// before: split weights and canary progress, rate-limit buckets and cached
    /// responses (a reload that changes other routes or upstreams does not reset them).
    pub(crate) fn inherit(&mut self, old: &Router) {
        for route in &mut self.routes {
            if let Some(previous) = old.routes.iter().find(|r| r.config == route.config) {
                route.policy = previous.policy.clone();
                route.split.inherit(&previous.split);
            }
        }
    }

    /// Each route's split, in matching order (empty without routes).
    pub(crate) fn splits(&self) -> impl Iterator<Item = &Arc<Split>> {
        self.routes.iter().map(|r| &r.split)
    }
}

/// What a request is routed over: the routing table and the upstreams it points at,
/// replaced together on reload.
#[derive(Debug)]
pub(crate) struct Table {
    /// The routes.
    pub(crate) router: Router,
    /// Every upstream, in configuration order.
    pub(crate) upstreams: Vec<Upstream>,
}

/// The live routing table: read with one atomic load per request, replaced whole (and
/// atomically) by a reload. A request keeps the table it started with.
#[derive(Debug)]
pub(crate) struct Routes {
    current: ArcSwap<Table>,
}

impl Routes {
    pub(crate) fn new(table: Table) -> Self {
        Self {
            current: ArcSwap::from_pointee(table),
        }
    }

    /// The upstream for `req` with its route's rate limit and cache, or `None` when no
    /// route matches.
    pub(crate) fn route_with_policy<B>(
        &self,
        req: &Request<B>,
    ) -> Option<(Upstream, Option<Arc<RoutePolicy>>)> {
        self.current
            .load()
            .router
            .route_with_policy(req)
            .map(|(u, p)| (u.clone(), p.cloned()))
    }

    /// The current table.
    pub(crate) fn table(&self) -> Arc<Table> {
        self.current.load_full()
    }

    /// Swaps `table` in; requests routed from now on use it.
    pub(crate) fn store(&self, table: Table) {
        self.current.store(Arc::new(table));
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

/// A route's own traffic controls: its rate limit and its response cache.
#[derive(Debug)]
pub(crate) struct RoutePolicy {
    /// `[route.rate_limit]`.
    pub(crate) rate_limit: Option<RateLimit>,
    /// `[route.cache]`.
    pub(crate) cache: Option<ResponseCache>,
}

impl RoutePolicy {
    /// The controls `route` configures, or `None` when it has none.
    fn new(route: &RouteConfig) -> Option<Self> {
        if route.rate_limit.is_none() && route.cache.is_none() {
            return None;
        }
        let label = route_label(route);
        Some(Self {
            rate_limit: route
                .rate_limit
                .as_ref()
                .map(|c| RateLimit::new(c, label.clone())),
            cache: route
                .cache
                .as_ref()
                .map(|c| ResponseCache::new(c, label.clone())),
        })
    }
}

/// A route's name in metrics: its host (or `*`) followed by its path prefix (or `/`),
/// such as `api.example.com/api`.
pub(crate) fn route_label(route: &RouteConfig) -> String {
    let host = match &route.host {
        None => "*".to_owned(),
        Some(HostMatch::Exact(h)) => h.clone(),
        Some(HostMatch::Wildcard(suffix)) => format!("*.{suffix}"),
    };
    format!("{host}{}", route.path_prefix.as_deref().unwrap_or("/"))
}
