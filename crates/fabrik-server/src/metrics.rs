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
        Metrics {
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
