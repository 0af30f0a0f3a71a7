//! The watcher's HTTP side: `GET /metrics` in the Prometheus/OpenMetrics text format
//! (`prometheus-client`), and `POST /alerts` taking Alertmanager's webhook JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::policy::Stats;
use super::probe::Round;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VmLabels {
    cluster: String,
    vm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    cluster: String,
    vm: String,
    volume: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    site: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every series the watcher exports.
pub struct Metrics {
    registry: Registry,
    vm_synced: Family<VmLabels, Gauge>,
    volume_synced: Family<VolumeLabels, Gauge>,
    volume_lag: Family<VolumeLabels, FloatGauge>,
    site_up: Family<ServiceLabels, Gauge>,
    probe_latency: Family<ServiceLabels, FloatGauge>,
    policy_last_run: Family<PolicyLabels, Gauge>,
    policy_runs: Family<PolicyLabels, Counter>,
    policy_errors: Family<PolicyLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("drbook");
        let vm_synced = Family::<VmLabels, Gauge>::default();
        let volume_synced = Family::<VolumeLabels, Gauge>::default();
        let volume_lag = Family::<VolumeLabels, FloatGauge>::default();
        let site_up = Family::<ServiceLabels, Gauge>::default();
        let probe_latency = Family::<ServiceLabels, FloatGauge>::default();
        let policy_last_run = Family::<PolicyLabels, Gauge>::default();
        let policy_runs = Family::<PolicyLabels, Counter>::default();
        let policy_errors = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "vm_synced",
            "1 when every volume of the mirrored VM is synced to its replica",
            vm_synced.clone(),
        );
        registry.register(
            "volume_synced",
            "1 when the mirrored volume's replica is caught up and idle",
            volume_synced.clone(),
        );
        registry.register(
            "volume_lag_seconds",
            "Now minus the newest mirror snapshot the replica holds (absent until one arrived)",
            volume_lag.clone(),
        );
        registry.register(
            "site_up",
            "1 when the site's service (mold or glue) answered the last probe",
            site_up.clone(),
        );
        registry.register(
            "probe_latency_seconds",
            "How long the service took to answer the last probe",
            probe_latency.clone(),
        );
        registry.register(
            "policy_last_run_timestamp_seconds",
            "When the policy's last handler call ended (Unix time)",
            policy_last_run.clone(),
        );
        registry.register(
            "policy_calls",
            "Handler calls of the policy since the watcher started",
            policy_runs.clone(),
        );
        registry.register(
            "policy_errors",
            "Handler calls of the policy that failed since the watcher started",
            policy_errors.clone(),
        );
        Self {
            registry,
            vm_synced,
            volume_synced,
            volume_lag,
            site_up,
            probe_latency,
            policy_last_run,
            policy_runs,
            policy_errors,
        }
    }

    /// Takes in a probe round: series of VMs and volumes that are gone disappear.
    pub fn record(&self, round: &Round) {
        for (site, h) in &round.health {
            for (service, up, ms) in [("mold", h.mold, h.mold_ms), ("glue", h.glue, h.glue_ms)] {
                let labels = ServiceLabels {
                    site: site.clone(),
                    service: service.into(),
                };
                self.site_up.get_or_create(&labels).set(i64::from(up));
                match ms {
                    #[allow(clippy::cast_precision_loss)]
                    Some(ms) => {
                        self.probe_latency
                            .get_or_create(&labels)
                            .set(ms as f64 / 1000.0);
                    }
                    None => {
                        self.probe_latency.remove(&labels);
                    }
                }
            }
        }
        self.vm_synced.clear();
        self.volume_synced.clear();
        self.volume_lag.clear();
        for (cluster, status) in &round.status {
            for vm in &status.vms {
                let labels = VmLabels {
                    cluster: cluster.clone(),
                    vm: vm.name.clone(),
                };
                // An unknown is left out: no sample rather than a made-up 0 or 1.
                if let Some(synced) = vm.synced.known() {
                    self.vm_synced
                        .get_or_create(&labels)
                        .set(i64::from(*synced));
                }
                for v in &vm.volumes {
                    let labels = VolumeLabels {
                        cluster: cluster.clone(),
                        vm: vm.name.clone(),
                        volume: v.path.clone(),
                        kind: v.kind.clone(),
                    };
                    if let Some(synced) = v.synced.known() {
                        self.volume_synced
                            .get_or_create(&labels)
                            .set(i64::from(*synced));
                    }
                    if let Some(Some(lag)) = v.lag.known() {
                        #[allow(clippy::cast_precision_loss)]
                        self.volume_lag
                            .get_or_create(&labels)
                            .set(lag.num_milliseconds() as f64 / 1000.0);
                    }
                }
            }
        }
    }

    /// Takes in the policies' counters (they only grow: a reloaded policy keeps its stats).
    pub fn record_policies(&self, policies: &[(String, Arc<Stats>)]) {
        use std::sync::atomic::Ordering::Relaxed;
        let catch_up = |counter: &Counter, total: u64| {
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        };
        for (name, stats) in policies {
            let labels = PolicyLabels {
                policy: name.clone(),
            };
            let last = stats.last_run.load(Relaxed);
            if last > 0 {
                self.policy_last_run
                    .get_or_create(&labels)
                    .set(i64::try_from(last).unwrap_or(i64::MAX));
            }
            catch_up(
                &self.policy_runs.get_or_create(&labels),
                stats.runs.load(Relaxed),
            );
            catch_up(
                &self.policy_errors.get_or_create(&labels),
                stats.errors.load(Relaxed),
            );
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone)]
struct App {
    metrics: Arc<Metrics>,
    alerts: tokio::sync::mpsc::UnboundedSender<Value>,
}

/// Serves `/metrics` and `/alerts` on `listen` until the watcher stops; returns the bound
/// address (port 0 picks one).
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    alerts: tokio::sync::mpsc::UnboundedSender<Value>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = App { metrics, alerts };
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(get_metrics))
        .route("/alerts", axum::routing::post(post_alerts))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((addr, task))
}

async fn get_metrics(State(app): State<App>) -> impl IntoResponse {
    let text = app.metrics.encode();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Alertmanager's webhook body: `{version, status, alerts: [...], groupLabels, …}`.
async fn post_alerts(State(app): State<App>, body: Json<Value>) -> impl IntoResponse {
    let Json(body) = body;
    if !body.get("alerts").is_some_and(Value::is_array) {
        return (
            StatusCode::BAD_REQUEST,
            "expected Alertmanager's webhook JSON: an object with an \"alerts\" array\n",
        );
    }
    if app.alerts.send(body).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the watcher is stopping\n");
    }
    (StatusCode::OK, "ok\n")
}
