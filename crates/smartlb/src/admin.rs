//! The admin API over the running proxy: the traffic document and the run-time changes
//! of backends (add, re-weight, drain, remove).

use smartlb_admin::{
    AdminControl, AdminError, Anomaly, BackendTraffic, BackendUpdate, ControlFuture, ForecastPoint,
    NewBackend, TrafficQuery, TrafficReport, TrafficSample, UpstreamStatus, UpstreamTraffic,
    WeightDecision,
};
use smartlb_config::{BackendAddress, BackendConfig};

use crate::clock;
use crate::proxy::Proxy;
use crate::upstream::{MembershipError, Upstream};

/// How long a deleted backend may take to finish its in-flight requests.
const REMOVE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

fn samples<T: serde::Serialize>(series: &[T]) -> Vec<TrafficSample> {
    series
        .iter()
        .filter_map(|s| serde_json::to_value(s).ok())
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

/// The traffic document of `GET /api/v1/traffic`.
pub(crate) fn traffic(proxy: &Proxy, query: &TrafficQuery) -> TrafficReport {
    TrafficReport {
        now_ms: clock::now().0 / 1_000_000,
        upstreams: proxy
            .upstreams()
            .iter()
            .map(|u| {
                let snapshot = u.traffic(query.samples);
                let report = u.analysis();
                let (anomalies, mode) = u.anomalies();
                let set = u.endpoints();
                let now = clock::now();
                UpstreamTraffic {
                    name: u.name().to_string(),
                    tick_ms: 1000,
                    analysis: mode.to_string(),
                    total: samples(&snapshot.total.series),
                    backends: snapshot
                        .backends
                        .iter()
                        .map(|b| BackendTraffic {
                            address: b.backend.clone(),
                            series: samples(&b.series),
                            weight: report.as_ref().and_then(|r| {
                                let d = r.weights.iter().find(|d| d.backend == b.backend)?;
                                let e =
                                    set.endpoints().iter().find(|e| e.address() == b.backend)?;
                                Some(WeightDecision {
                                    configured: e.configured_weight(),
                                    computed: d.weight,
                                    applied: e.effective_weight(now),
                                    reason: d.explain(),
                                })
                            }),
                        })
                        .collect(),
                    forecast: report.as_ref().and_then(|r| {
                        Some(ForecastPoint {
                            at_ms: r.at_ms,
                            rps: r.forecast.next_rps?,
                            lower: r.forecast.lower_rps.unwrap_or(0.0),
                            upper: r.forecast.upper_rps.unwrap_or(0.0),
                        })
                    }),
                    forecast_series: Vec::new(),
                    anomalies: anomalies.iter().map(anomaly).collect(),
                }
            })
            .collect(),
    }
}

/// An anomaly as the admin API reports it.
pub(crate) fn anomaly(a: &smartlb_traffic::analysis::Anomaly) -> Anomaly {
    Anomaly {
        at_ms: a.at_ms,
        kind: a.kind.as_str().to_string(),
        backend: a.backend.clone(),
        message: a.to_string(),
        value: Some(a.observed),
        expected: Some(a.expected),
    }
}

fn find(proxy: &Proxy, name: &str) -> Result<Upstream, AdminError> {
    proxy
        .upstream(name)
        .ok_or_else(|| AdminError::NotFound(format!("no upstream named `{name}`")))
}

fn status_of(proxy: &Proxy, name: &str) -> Result<UpstreamStatus, AdminError> {
    proxy
        .status()
        .upstreams
        .into_iter()
        .find(|u| u.name == name)
        .ok_or_else(|| AdminError::NotFound(format!("no upstream named `{name}`")))
}

fn check_weight(weight: u32) -> Result<(), AdminError> {
    if (BackendConfig::MIN_WEIGHT..=BackendConfig::MAX_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(AdminError::BadRequest(format!(
            "weight {weight} is outside {}..={}",
            BackendConfig::MIN_WEIGHT,
            BackendConfig::MAX_WEIGHT
        )))
    }
}

impl AdminControl for Proxy {
    fn add_backend(
        &self,
        upstream: String,
        backend: NewBackend,
    ) -> ControlFuture<'_, UpstreamStatus> {
        Box::pin(async move {
            let target = find(self, &upstream)?;
            check_weight(backend.weight)?;
            let address: BackendAddress = backend.address.parse().map_err(|e| {
                AdminError::BadRequest(format!("address `{}`: {e}", backend.address))
            })?;
            let mut config = BackendConfig::new(address);
            config.weight = backend.weight;
            config.backup = backend.backup;
            target.add_backend(&config).map_err(|e| match e {
                MembershipError::Exists(_) => AdminError::Conflict(e.to_string()),
                _ => AdminError::BadRequest(e.to_string()),
            })?;
            status_of(self, &upstream)
        })
    }

    fn update_backend(
        &self,
        upstream: String,
        address: String,
        update: BackendUpdate,
    ) -> ControlFuture<'_, UpstreamStatus> {
        Box::pin(async move {
            let target = find(self, &upstream)?;
            let missing =
                || AdminError::NotFound(format!("no backend `{address}` in `{upstream}`"));
            if let Some(weight) = update.weight {
                check_weight(weight)?;
                if !target.set_weight(&address, weight) {
                    return Err(missing());
                }
            }
            if let Some(drain) = update.drain
                && target.set_draining(&address, drain).is_none()
            {
                return Err(missing());
            }
            status_of(self, &upstream)
        })
    }

    fn set_split(
        &self,
        index: usize,
        split: Vec<smartlb_admin::SplitWeight>,
    ) -> ControlFuture<'_, smartlb_admin::RouteStatus> {
        Box::pin(async move { Proxy::set_split(self, index, &split) })
    }

    fn reload(&self) -> ControlFuture<'_, smartlb_admin::ReloadReport> {
        Box::pin(async move {
            match Proxy::reload(self) {
                Ok(changes) => Ok(smartlb_admin::ReloadReport { changes }),
                Err(crate::reload::ReloadError::NoSource) => Err(AdminError::Conflict(
                    "the proxy was not started from a configuration file".into(),
                )),
                Err(error) => Err(AdminError::BadRequest(error.to_string())),
            }
        })
    }

    fn remove_backend(
        &self,
        upstream: String,
        address: String,
    ) -> ControlFuture<'_, UpstreamStatus> {
        Box::pin(async move {
            let target = find(self, &upstream)?;
            let set = target.endpoints();
            let primaries = set.endpoints().iter().filter(|e| !e.is_backup()).count();
            if let Some(endpoint) = set.endpoints().iter().find(|e| e.address() == address)
                && !endpoint.is_backup()
                && primaries == 1
            {
                return Err(AdminError::Conflict(format!(
                    "`{address}` is the last primary backend of `{upstream}`; add another first"
                )));
            }
            if !target.remove_backend(&address, REMOVE_GRACE) {
                return Err(AdminError::NotFound(format!(
                    "no backend `{address}` in `{upstream}`"
                )));
            }
            status_of(self, &upstream)
        })
    }
}
