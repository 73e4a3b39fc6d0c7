//! `fabrik plan` end to end: outputs for stated inputs, JSON, facility files, and errors.

use std::process::{Command, Output};

fn fabrik(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fabrik")).args(args).output().expect("runs fabrik")
}

fn json(args: &[&str]) -> serde_json::Value {
    let o = fabrik(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn fails_with(args: &[&str], needle: &str) {
    let o = fabrik(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"));
}

#[test]
fn train_400b_on_15t_tokens_on_16k_h100() {
    // 6 · 400e9 · 15e12 = 3.6e25 FLOPs; at MFU 0.41 and a given ETTR of 0.9 on 16,384 H100:
    // 3.6e25 / (16,384 · 989e12 · 0.41) / 0.9 s = 6.0208e6 s = 69.69 days.
    let v =
        json(&["plan", "train", "--params", "400B", "--tokens", "15T", "--gpus", "16384", "--ettr", "0.9", "--json"]);
    assert!((v["training_flops"].as_f64().unwrap() - 3.6e25).abs() < 1e10);
    let days = 3.6e25 / (16_384.0 * 989e12 * 0.41) / 0.9 / 86_400.0;
    assert!((v["wall_clock_days"].as_f64().unwrap() - days).abs() < 1e-9);
    // GPU-hours × 969 W (76% of 1,275 W) × PUE 1.25 × 384 g/kWh
    let gh = 16_384.0 * days * 24.0;
    assert!((v["gpu_hours"].as_f64().unwrap() - gh).abs() < 1e-3);
    let mwh = gh * 0.76 * 1275.0 * 1.25 / 1e6;
    assert!((v["facility_energy_mwh"].as_f64().unwrap() - mwh).abs() < 1e-6);
    assert!((v["emissions_t"].as_f64().unwrap() - mwh * 0.384).abs() < 1e-6);
    assert!(v["assumptions"].as_array().unwrap().len() >= 8);
}

#[test]
fn facility_presets_compare_and_files() {
    let v = json(&["plan", "facility", "--preset", "eu-gigafactory", "--json"]);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["gpus"].as_f64(), Some(52_128.0));
    assert_eq!(v[1]["gpus"].as_f64(), Some(100_008.0));
    let leam = json(&["plan", "facility", "--preset", "leam", "--json"]);
    assert!(leam[0]["capex"]["total_eur"].as_f64().unwrap() <= 350e6);
    let file = std::env::temp_dir().join(format!("fabrik-plan-{}.toml", std::process::id()));
    let o =
        fabrik(&["plan", "facility", "--gpus", "4096", "--gpu", "H100", "--write-facility", file.to_str().unwrap()]);
    assert!(o.status.success());
    let s = json(&["facility", "show", file.to_str().unwrap(), "--json"]);
    assert_eq!((s["gpus"].as_u64(), s["groups"].as_u64()), (Some(4096), Some(16)));
    let o = fabrik(&[
        "plan",
        "compare",
        "train",
        "--params",
        "70B",
        "--tokens",
        "2T",
        "--gpus",
        "1024",
        "--gpu-types",
        "H100,B200,MI300X",
        "--zones",
        "DE,FR",
        "--json",
    ]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 6);
    // same run, same GPUs: French grid (60 g) emits 60/384 of the German (384 g)
    let de = rows[0]["emissions_t"].as_f64().unwrap();
    let fr = rows[1]["emissions_t"].as_f64().unwrap();
    assert!((fr / de - 60.0 / 384.0).abs() < 1e-9);
    let p = json(&["plan", "power", "--json"]);
    assert_eq!(p[0]["gpus"].as_f64(), Some(62_745.0));
    let c = json(&["plan", "checkpoint", "--gpus", "16384", "--checkpoint-s", "100", "--restart-s", "600", "--json"]);
    assert!((c["interruptions_per_day"].as_f64().unwrap() - 13.312).abs() < 1e-9);
}

#[test]
fn invalid_plan_inputs_fail_clearly() {
    fails_with(&["plan", "train", "--params", "1B", "--tokens", "1T", "--gpus", "0"], "gpus: must be positive, got 0");
    fails_with(&["plan", "train", "--params", "1B", "--tokens", "1T", "--gpus=-8"], "gpus: must be positive, got -8");
    fails_with(
        &["plan", "train", "--params", "1B", "--tokens", "1T", "--gpus", "8", "--mfu", "1.2"],
        "mfu: 1.2 is outside (0, 1]",
    );
    fails_with(
        &["plan", "train", "--params", "1B", "--tokens", "1T", "--gpus", "8", "--gpu", "TPUv9"],
        "unknown GPU type 'TPUv9'",
    );
    fails_with(
        &["plan", "train", "--params", "1B", "--tokens", "1T", "--gpus", "8", "--zone", "XX"],
        "unknown grid zone 'XX'",
    );
    fails_with(
        &["plan", "train", "--params", "lots", "--tokens", "1T", "--gpus", "8"],
        "params: 'lots' is not a number",
    );
    fails_with(&["plan", "train", "--params", "1B", "--tokens", "1T"], "give --gpus N or --days D");
    fails_with(&["plan", "facility"], "give --budget-eur, --gpus or --preset");
    fails_with(&["plan", "facility", "--preset", "moonbase"], "unknown planning preset 'moonbase'");
    fails_with(&["plan", "facility", "--gpus", "100", "--utilisation", "1.5"], "utilisation: 1.5 is outside (0, 1]");
}

#[test]
fn train_from_a_finished_runs_usage() {
    // 16,384 H100 for 54 days = 21,233,664 GPU-hours × 969 W × PUE 1.25 × 384 g/kWh.
    let v = json(&["plan", "train", "--gpus", "16384", "--days", "54", "--json"]);
    let gh = 16_384.0 * 54.0 * 24.0;
    assert_eq!(v["gpu_hours"].as_f64().unwrap(), gh);
    let mwh = gh * 0.76 * 1275.0 * 1.25 / 1e6;
    assert!((v["facility_energy_mwh"].as_f64().unwrap() - mwh).abs() < 1e-6);
    assert!((v["emissions_t"].as_f64().unwrap() - mwh * 0.384).abs() < 1e-6);
    // the same GPU-hours given directly
    let w = json(&["plan", "train", "--gpu-hours", &gh.to_string(), "--json"]);
    assert_eq!(w["emissions_t"], v["emissions_t"]);
    assert!(w["wall_clock_days"].is_null());
    fails_with(&["plan", "train", "--days", "54"], "--gpu-hours H (or --gpus N --days D)");
    fails_with(&["plan", "train", "--gpu-hours", "1M", "--days", "3"], "not both");
    fails_with(&["plan", "train", "--gpu-hours", "1M", "--mfu", "0.4"], "--mfu");
    fails_with(&["plan", "train", "--params", "7B", "--tokens", "1T", "--gpu-hours", "1M"], "one or the other");
    fails_with(&["plan", "train", "--params", "7B", "--tokens", "1T", "--gpus", "8", "--days", "3"], "not both");
}
