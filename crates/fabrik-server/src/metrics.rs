//! Prometheus metrics, exposed at `/metrics` in the text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabel {
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabel {
    pub signal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub method: String,
    pub route: String,
    pub status: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub jobs: Family<StateLabel, Gauge>,
    pub gpus: Family<StateLabel, Gauge>,
    pub queue: Family<AccountLabel, Gauge>,
    pub pass_seconds: Histogram,
    pub api_seconds: Family<RouteLabel, Histogram>,
    pub submissions: Counter,
    pub it_power_w: Gauge<f64, AtomicU64>,
    /// Store writes that failed; while the last one failed the engine starts nothing new and
    /// `/healthz` answers 503 with the error.
    pub store_errors: Counter,
    pub store_healthy: Gauge,
    pub store_error: std::sync::Mutex<Option<String>>,
    /// Telemetry: 1 while the last poll gave fresh samples; polls by result; the health
    /// detector's drains by the signal that fired (a drain on two signals counts for each);
    /// drains a dry run or the cap held back; nodes the detector suspects now.
    pub telemetry_up: Gauge,
    /// Why telemetry is degraded (shown by `/healthz`).
    pub telemetry_error: std::sync::Mutex<Option<String>>,
    pub telemetry_polls: Family<StateLabel, Counter>,
    pub health_drains: Family<SignalLabel, Counter>,
    pub health_held_back: Family<StateLabel, Counter>,
    pub health_suspects: Gauge,
    pub health_returns: Counter,
    /// Jobs that ended, by final state (a counter: `rate()` gives completions per second).
    pub ended: Family<StateLabel, Counter>,
    /// Submission to start, seconds, of every job started (a restarted one counts again).
    pub queue_wait_seconds: Histogram,
    /// GPUs allocated per account (leaf), facility power and its cap (W).
    pub account_gpus: Family<AccountLabel, Gauge>,
    pub facility_power_w: Gauge<f64, AtomicU64>,
    pub power_cap_w: Gauge<f64, AtomicU64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    pub version: String,
}

fn latency_histogram() -> Histogram {
    // 10 µs … ~5 s
    Histogram::new(exponential_buckets(1e-5, 2.5, 15))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fabrik");
        let jobs = Family::<StateLabel, Gauge>::default();
        let gpus = Family::<StateLabel, Gauge>::default();
        let queue = Family::<AccountLabel, Gauge>::default();
        let pass_seconds = latency_histogram();
        let api_seconds = Family::<RouteLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let submissions = Counter::default();
        let it_power_w = Gauge::<f64, AtomicU64>::default();
        registry.register("jobs", "Jobs by state", jobs.clone());
        registry.register("gpus", "GPUs allocated and free", gpus.clone());
        registry.register("queue_length", "Pending jobs per account", queue.clone());
        registry.register("scheduling_pass_seconds", "Duration of one scheduling pass", pass_seconds.clone());
        registry.register("api_request_seconds", "API request latency", api_seconds.clone());
        registry.register("submissions", "Accepted job submissions", submissions.clone());
        registry.register("it_power_watts", "Estimated IT power of the facility (GPU power model)", it_power_w.clone());
        let store_errors = Counter::default();
        let store_healthy = Gauge::default();
        store_healthy.set(1);
        registry.register("store_write_errors", "Store writes that failed", store_errors.clone());
        registry.register("store_healthy", "1 while the last store write succeeded", store_healthy.clone());
        let telemetry_up = Gauge::default();
        let telemetry_polls = Family::<StateLabel, Counter>::default();
        let health_drains = Family::<SignalLabel, Counter>::default();
        let health_held_back = Family::<StateLabel, Counter>::default();
        let health_suspects = Gauge::default();
        let health_returns = Counter::default();
        registry.register("telemetry_up", "1 while the last telemetry poll gave fresh samples", telemetry_up.clone());
        registry.register("telemetry_polls", "Telemetry polls by result (ok, error, stale)", telemetry_polls.clone());
        registry.register(
            "health_drains",
            "Nodes drained by the health detector, by signal that fired (ecc, xid, temp)",
            health_drains.clone(),
        );
        registry.register(
            "health_drains_held_back",
            "Drains the detector wanted but did not make (dry_run, cap, degraded)",
            health_held_back.clone(),
        );
        registry.register("health_suspect_nodes", "Nodes the health detector suspects now", health_suspects.clone());
        registry.register("health_returns", "Detector-drained nodes returned to service", health_returns.clone());
        let ended = Family::<StateLabel, Counter>::default();
        // 1 s … ~12 days
        let queue_wait_seconds = Histogram::new(exponential_buckets(1.0, 3.0, 14));
        let account_gpus = Family::<AccountLabel, Gauge>::default();
        let facility_power_w = Gauge::<f64, AtomicU64>::default();
        let power_cap_w = Gauge::<f64, AtomicU64>::default();
        registry.register("jobs_ended", "Jobs that ended, by final state", ended.clone());
        registry.register("queue_wait_seconds", "Submission to start of started jobs", queue_wait_seconds.clone());
        registry.register("account_gpus", "GPUs allocated per account", account_gpus.clone());
        registry.register(
            "facility_power_watts",
            "Estimated facility power: IT power (GPU power model) x PUE",
            facility_power_w.clone(),
        );
        registry.register("power_cap_watts", "The facility power cap (0: none)", power_cap_w.clone());
        let build = Family::<BuildLabel, Gauge>::default();
        build.get_or_create(&BuildLabel { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        registry.register("build_info", "fabrik's version (the value is 1)", build);
        Metrics {
            ended,
            queue_wait_seconds,
            account_gpus,
            facility_power_w,
            power_cap_w,
            telemetry_error: std::sync::Mutex::new(None),
            telemetry_up,
            telemetry_polls,
            health_drains,
            health_held_back,
            health_suspects,
            health_returns,
            registry,
            jobs,
            gpus,
            queue,
            pass_seconds,
            api_seconds,
            submissions,
            it_power_w,
            store_errors,
            store_healthy,
            store_error: std::sync::Mutex::new(None),
        }
    }

    /// Records the outcome of a store write.
    pub fn store_result<T, E: std::fmt::Display>(&self, what: &str, r: &Result<T, E>) {
        let mut last = self.store_error.lock().expect("health lock");
        match r {
            Ok(_) => {
                if last.take().is_some() {
                    tracing::info!("store writes succeed again");
                }
                self.store_healthy.set(1);
            }
            Err(e) => {
                tracing::error!(error = %e, "store write failed: {what}");
                self.store_errors.inc();
                self.store_healthy.set(0);
                *last = Some(format!("{what}: {e}"));
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
