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
    // 6 · 400e9 · 15e12 = 3.6e25 FLOPs; at the default MFU and a given ETTR of 0.9 on 16,384
    // H100. The MFU follows model size: 400B sits a hair below Llama 3's 405B anchor,
    // 0.22 + 0.21 · log10(400)/log10(405) = 0.429565, times 41/43 at 16,384 GPUs = 0.409585:
    // 3.6e25 / (16,384 · 989e12 · 0.409585) / 0.9 s = 6.0269e6 s = 69.76 days.
    let v =
        json(&["plan", "train", "--params", "400B", "--tokens", "15T", "--gpus", "16384", "--ettr", "0.9", "--json"]);
    assert!((v["training_flops"].as_f64().unwrap() - 3.6e25).abs() < 1e10);
    let mfu = (0.22 + 0.21 * 400f64.log10() / 405f64.log10()) * 0.41 / 0.43;
    assert!((v["mfu"].as_f64().unwrap() - mfu).abs() < 1e-12 && (mfu - 0.409585).abs() < 1e-6);
    let days = 3.6e25 / (16_384.0 * 989e12 * mfu) / 0.9 / 86_400.0;
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

#[test]
fn train_on_a_facility_files_own_gpu_and_on_published_chips() {
    // a facility file's custom GPU: 1,000 GPU-hours of X1 at its 300 W board power, PUE 1,
    // 500 gCO2/kWh: 0.3 MWh and 0.15 t; in IT scope 76% of (300 + 100) W = 304 W, 0.304 MWh
    let file = std::env::temp_dir().join(format!("fabrik-plan-x1-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "name = \"lab\"\n[[gpu]]\nname = \"X1\"\nbf16_tflops = 100.0\nmemory_gb = 64.0\nmax_power_w = 300.0\n\
         idle_power_w = 30.0\nhost_overhead_w = 100.0\nprice_usd = 5000.0\n\
         [[pool]]\ngpu = \"X1\"\ndomain_gpus = 8\ndomains_per_group = 4\ngroups = 1\nhall = \"h\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let base = ["plan", "train", "--facility", f, "--gpu", "x1", "--gpu-hours", "1000", "--pue", "1.0"];
    let gpu = json(&[&base[..], &["--gco2-per-kwh", "500", "--power-scope", "gpu", "--json"]].concat());
    assert!((gpu["it_energy_mwh"].as_f64().unwrap() - 0.3).abs() < 1e-12);
    assert!((gpu["emissions_t"].as_f64().unwrap() - 0.15).abs() < 1e-12);
    assert_eq!(gpu["host_power_w_per_gpu"].as_f64(), Some(0.0));
    let it = json(&[&base[..], &["--json"]].concat());
    assert!((it["it_energy_mwh"].as_f64().unwrap() - 0.304).abs() < 1e-12);
    assert!((it["gpu_power_w_per_gpu"].as_f64().unwrap() - 228.0).abs() < 1e-9);
    // without the file X1 is unknown, and the error lists the catalog with the new chips
    fails_with(&["plan", "train", "--gpu", "X1", "--gpu-hours", "1000"], "unknown GPU type 'X1'");
    fails_with(&["plan", "train", "--gpu", "X1", "--gpu-hours", "1000"], "TPUv5p");
    // a run on TPU v4: 6 · 1e9 · 1e12 FLOP on 64 chips at 275 TFLOP/s, MFU 0.4, ETTR 1
    let v = json(&[
        "plan", "train", "--params", "1B", "--tokens", "1T", "--gpus", "64", "--gpu", "TPUv4", "--mfu", "0.4",
        "--ettr", "1", "--json",
    ]);
    let days = 6e21 / (64.0 * 275e12 * 0.4) / 86_400.0;
    assert!((v["wall_clock_days"].as_f64().unwrap() - days).abs() < 1e-9);
    // FP8 where the chip has none is refused, where it has one it uses the FP8 peak
    fails_with(
        &["plan", "train", "--params", "1B", "--tokens", "1T", "--gpus", "8", "--gpu", "V100", "--precision", "fp8"],
        "V100 has no FP8 peak",
    );
    let h = json(&[
        "plan",
        "train",
        "--params",
        "1B",
        "--tokens",
        "1T",
        "--gpus",
        "8",
        "--gpu",
        "H800",
        "--precision",
        "fp8",
        "--mfu",
        "0.3",
        "--ettr",
        "1",
        "--json",
    ]);
    let days = 6e21 / (8.0 * 1979e12 * 0.3) / 86_400.0;
    assert!((h["wall_clock_days"].as_f64().unwrap() - days).abs() < 1e-9);
    assert_eq!(h["precision"].as_str(), Some("fp8"));
    let _ = std::fs::remove_file(&file);
}
