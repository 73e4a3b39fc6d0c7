//! Telemetry input: a thread that asks a Prometheus server's HTTP API for the dcgm-exporter
//! series (`fabrik_model::telemetry`) every interval and hands the engine what it got, or why
//! it got nothing. It never decides anything: the engine's health module does.

use crate::engine::{Cmd, TelemetryBatch};
use fabrik_model::telemetry::{self, GpuReading, QueryResponse};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct TelemetrySource {
    /// Base address of the Prometheus server (`http://127.0.0.1:9090`).
    pub prometheus: String,
    pub interval: Duration,
    /// Per request.
    pub timeout: Duration,
    /// The label naming a series' node (dcgm-exporter's `Hostname`).
    pub host_label: String,
}

impl TelemetrySource {
    /// Parses `prometheus=URL` (the only source so far).
    pub fn parse(spec: &str) -> Result<TelemetrySource, String> {
        let url = spec
            .strip_prefix("prometheus=")
            .ok_or_else(|| format!("--telemetry: '{spec}' is not prometheus=URL"))?
            .trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "http://".len() {
            return Err(format!("--telemetry: '{url}' is not an http:// or https:// address"));
        }
        Ok(TelemetrySource {
            prometheus: url.to_string(),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
            host_label: "Hostname".into(),
        })
    }
}

/// Bounds what one answer may hold (a facility of 100,000 GPUs exports ~1.5 M series).
const MAX_BODY: usize = 512 << 20;

fn get(client: &reqwest::blocking::Client, base: &str, query: &str) -> Result<QueryResponse, String> {
    let resp = client
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .map_err(|e| format!("Prometheus at {base} unreachable: {}", chain(&e.without_url())))?;
    let status = resp.status();
    if resp.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        return Err(format!("Prometheus at {base}: answer larger than {} MiB", MAX_BODY >> 20));
    }
    let body = resp.bytes().map_err(|e| format!("Prometheus at {base}: reading the answer: {e}"))?;
    if body.len() > MAX_BODY {
        return Err(format!("Prometheus at {base}: answer larger than {} MiB", MAX_BODY >> 20));
    }
    let q: QueryResponse = serde_json::from_slice(&body)
        .map_err(|e| format!("Prometheus at {base} (HTTP {status}): not a query answer: {e}"))?;
    if q.status != "success" {
        return Err(format!("Prometheus at {base}: query failed: {}", q.error.unwrap_or_else(|| q.status.clone())));
    }
    Ok(q)
}

/// An error with its causes (`connection refused` is a cause of reqwest's error).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut c = e.source();
    while let Some(x) = c {
        s.push_str(": ");
        s.push_str(&x.to_string());
        c = x.source();
    }
    s
}

/// One poll: the series' values, and the time of each GPU's last temperature sample (its
/// freshness: an instant query answers with the last value for five minutes after an exporter
/// stopped).
pub fn poll(client: &reqwest::blocking::Client, src: &TelemetrySource) -> Result<TelemetryBatch, String> {
    let values = get(client, &src.prometheus, &telemetry::query())?;
    let ts = get(client, &src.prometheus, "timestamp(DCGM_FI_DEV_GPU_TEMP)")?;
    let data = values.data.ok_or("Prometheus answered without data")?;
    if data.result_type != "vector" {
        return Err(format!("Prometheus answered a {} instead of a vector", data.result_type));
    }
    let (readings, skipped) = telemetry::readings_from(&data.result, &src.host_label);
    let mut sampled_at: HashMap<(String, u32), f64> = HashMap::new();
    for s in ts.data.map(|d| d.result).unwrap_or_default() {
        let (Some(h), Some(g), Ok(t)) = (
            s.metric.get(&src.host_label),
            s.metric.get("gpu").and_then(|g| g.parse::<u32>().ok()),
            s.value.1.parse::<f64>(),
        ) else {
            continue;
        };
        sampled_at.insert((h.clone(), g), t);
    }
    let readings: Vec<(GpuReading, Option<f64>)> = readings
        .into_iter()
        .map(|r| {
            let t = sampled_at.get(&(r.host.clone(), r.gpu)).copied();
            (r, t)
        })
        .collect();
    Ok(TelemetryBatch { readings, skipped })
}

/// Polls until the engine is gone.
pub fn run(src: TelemetrySource, tx: mpsc::Sender<Cmd>) {
    let client = match reqwest::blocking::Client::builder().timeout(src.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Cmd::Telemetry(Err(format!("no HTTP client: {e}"))));
            return;
        }
    };
    loop {
        let r = poll(&client, &src);
        if tx.send(Cmd::Telemetry(r)).is_err() {
            return;
        }
        std::thread::sleep(src.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_checked() {
        let s = TelemetrySource::parse("prometheus=http://127.0.0.1:9090/").unwrap();
        assert_eq!(s.prometheus, "http://127.0.0.1:9090");
        assert!(TelemetrySource::parse("http://x").unwrap_err().contains("prometheus=URL"));
        assert!(TelemetrySource::parse("prometheus=ftp://x").unwrap_err().contains("not an http"));
        assert!(TelemetrySource::parse("prometheus=http://").is_err());
    }
}
