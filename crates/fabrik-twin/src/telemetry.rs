//! The twin's telemetry model: what a node's GPUs report per sample, healthy or with a failing
//! part's precursor, and how hard that precursor is to see ([`Difficulty`]). The twin's failure
//! model draws its samples here, and [`Exporter`] turns the same draws into per-GPU
//! dcgm-exporter counters for `fabrik telemetry serve`, so the live loop can be run end to end
//! without GPUs.

use fabrik_model::telemetry::{GpuReading, Series};
use fabrik_model::{DomainId, Facility};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// How visible a failing part's precursor is. The defaults (all 1 or 0) are the deliberately
/// strong precursor `fabrik simulate --predictive` has always drawn.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Difficulty {
    /// Scales the precursor's rise above healthy behaviour (1: ~12 extra corrected errors and
    /// 40% XID chance per sample and +5 °C at the failure).
    pub strength: f64,
    /// Scales healthy noise (the corrected-error rate, the XID chance and the temperature σ).
    pub noise: f64,
    /// Share of samples lost (the scrape failed, the exporter was down).
    pub missing: f64,
    /// Share of samples in which the node's counters reset (a driver reload): the sample then
    /// sees only the errors counted since the reset.
    pub resets: f64,
}

impl Default for Difficulty {
    fn default() -> Self {
        Difficulty { strength: 1.0, noise: 1.0, missing: 0.0, resets: 0.0 }
    }
}

impl Difficulty {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v, max) in [
            ("strength", self.strength, 100.0),
            ("noise", self.noise, 100.0),
            ("missing", self.missing, 1.0),
            ("resets", self.resets, 1.0),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return Err(format!("precursor {name}: {v} is outside [0, {max}]"));
            }
        }
        Ok(())
    }
}

/// One node sample as the detector sees it: corrected errors, error events, temperature
/// deviation (°C); `None` when the sample was lost.
pub type Drawn = Option<(f64, u32, f64)>;

/// Draws one sample of a node whose precursor has progressed to `x` in [0, 1] (0: healthy): on
/// healthy hardware ~0.5 corrected errors, a 1% XID chance and N(0, 1.5 °C); a degrading part
/// ramps to ~12.5 errors, 41% XIDs and +5 °C at its failure (scaled by `d`).
pub fn draw(r: &mut ChaCha8Rng, x: f64, d: &Difficulty) -> Drawn {
    use rand_distr::{Distribution, Normal, Poisson};
    // the extra draws only when asked for: the default stream is the one the twin always drew
    if d.missing > 0.0 && r.gen::<f64>() < d.missing {
        return None;
    }
    let noise = Normal::new(0.0, 1.5 * d.noise).unwrap_or(Normal::new(0.0, 0.0).expect("zero σ"));
    let mut ecc = Poisson::new(0.5 * d.noise + 12.0 * d.strength * x).map_or(0.0, |p| p.sample(r));
    let mut xid = u32::from(r.gen::<f64>() < 0.01 * d.noise + 0.4 * d.strength * x);
    let temp = 5.0 * d.strength * x + noise.sample(r);
    if d.resets > 0.0 && r.gen::<f64>() < d.resets {
        // the counters restarted somewhere in the interval: only what came after is seen
        let after: f64 = r.gen();
        ecc = (ecc * after).floor();
        xid = u32::from(xid > 0 && r.gen::<f64>() < after);
    }
    Some((ecc, xid, temp))
}

/// A precursor injected on one node of the exporter: it starts at `start_s` and reaches its
/// full strength `ramp_s` later (exporter seconds after start, at its time scale).
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    pub domain: DomainId,
    pub start_s: f64,
    pub ramp_s: f64,
}

/// Synthetic dcgm-exporter: per-GPU counters and temperatures of every node of a facility,
/// advanced one sample per step from [`draw`]. A node's corrected errors and events land on its
/// GPU 0 (the failing part), its temperature deviation on GPU 0's temperature; the others
/// show healthy noise of their own.
pub struct Exporter {
    gpus: Vec<Vec<GpuReading>>,
    injected: Vec<Injected>,
    difficulty: Difficulty,
    rng: ChaCha8Rng,
    /// GPU model name for the `modelName` label, per domain.
    models: Vec<String>,
    /// Exporter seconds sampled so far.
    pub t_s: f64,
    /// Nodes whose counters reset at the next step (a driver reload on the node).
    reset_next: Vec<DomainId>,
}

/// A healthy GPU's temperature under load, °C (all GPUs of a node alike; the failing one's
/// noise is the model's, its siblings' a fifth of it).
const BASE_TEMP_C: f64 = 62.0;

impl Exporter {
    pub fn new(f: &Facility, injected: Vec<Injected>, difficulty: Difficulty, seed: u64) -> Exporter {
        use rand::SeedableRng;
        let mut gpus = Vec::with_capacity(f.domains.len());
        let mut models = Vec::with_capacity(f.domains.len());
        for d in 0..f.domains.len() {
            let dom = DomainId(d as u32);
            let host = fabrik_model::telemetry::hostname_of(f, dom);
            let n = f.domain_gpus(dom).min(72);
            let gpu = f.gpu(f.pools[f.domains[d].pool.idx()].gpu_type);
            models.push(format!("NVIDIA {}", gpu.name));
            gpus.push(
                (0..n)
                    .map(|g| {
                        let mut r = GpuReading { host: host.clone(), gpu: g, ..Default::default() };
                        for s in Series::ALL {
                            r.values.insert(s, 0.0);
                        }
                        r.values.insert(Series::GpuTemp, BASE_TEMP_C);
                        r.values.insert(Series::Power, gpu.max_power_w * 0.7);
                        r
                    })
                    .collect(),
            );
        }
        Exporter {
            gpus,
            injected,
            difficulty,
            rng: ChaCha8Rng::seed_from_u64(seed),
            models,
            t_s: 0.0,
            reset_next: Vec::new(),
        }
    }

    /// The precursor's progress on `d` at exporter time `t_s`.
    fn progress(&self, d: usize, t_s: f64) -> f64 {
        self.injected
            .iter()
            .filter(|i| i.domain.idx() == d && t_s >= i.start_s)
            .map(|i| if i.ramp_s > 0.0 { ((t_s - i.start_s) / i.ramp_s).min(1.0) } else { 1.0 })
            .fold(0.0, f64::max)
    }

    /// Resets node `d`'s counters at the next step, as a driver reload would.
    pub fn reset_counters(&mut self, d: DomainId) {
        self.reset_next.push(d);
    }

    /// Advances every node by one sample taken `dt_s` exporter seconds after the last.
    pub fn step(&mut self, dt_s: f64) {
        use rand_distr::{Distribution, Normal};
        self.t_s += dt_s;
        let sibling = Normal::new(0.0, 0.3 * self.difficulty.noise).unwrap_or(Normal::new(0.0, 0.0).expect("zero σ"));
        for d in 0..self.gpus.len() {
            let x = self.progress(d, self.t_s);
            let reset = self.reset_next.contains(&DomainId(d as u32));
            let drawn = draw(&mut self.rng, x, &self.difficulty);
            let node = &mut self.gpus[d];
            if reset {
                for g in node.iter_mut() {
                    for s in Series::ALL.iter().filter(|s| s.is_counter()) {
                        g.values.insert(*s, 0.0);
                    }
                }
            }
            let Some((ecc, xid, temp)) = drawn else { continue };
            for (i, g) in node.iter_mut().enumerate() {
                let base = BASE_TEMP_C;
                if i == 0 {
                    *g.values.entry(Series::EccSbe).or_default() += ecc;
                    *g.values.entry(Series::XidCount).or_default() += f64::from(xid);
                    if xid > 0 {
                        g.values.insert(Series::XidLast, 79.0);
                    }
                    g.values.insert(Series::GpuTemp, (base + temp).round());
                } else {
                    g.values.insert(Series::GpuTemp, (base + sibling.sample(&mut self.rng)).round());
                }
            }
        }
        self.reset_next.clear();
    }

    /// The current readings in dcgm-exporter's text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (d, node) in self.gpus.iter().enumerate() {
            out.push_str(&fabrik_model::telemetry::render(node, &self.models[d]));
        }
        out
    }

    pub fn readings(&self, d: DomainId) -> &[GpuReading] {
        &self.gpus[d.idx()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabrik_model::telemetry::Tracker;
    use fabrik_model::SimTime;
    use rand::SeedableRng;

    #[test]
    fn the_default_difficulty_draws_the_stream_the_twin_always_drew() {
        // the twin's samples before Difficulty existed: Poisson(0.5 + 12x), XID 1% + 40% x,
        // 5x + N(0, 1.5), in that order from one generator
        use rand_distr::{Distribution, Normal, Poisson};
        let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(3), ChaCha8Rng::seed_from_u64(3));
        for k in 0..200 {
            let x = f64::from(k % 11) / 10.0;
            let got = draw(&mut a, x, &Difficulty::default()).unwrap();
            let ecc = Poisson::new(0.5 + 12.0 * x).unwrap().sample(&mut b);
            let xid = u32::from(b.gen::<f64>() < 0.01 + 0.4 * x);
            let temp = 5.0 * x + Normal::new(0.0, 1.5).unwrap().sample(&mut b);
            assert_eq!(got, (ecc, xid, temp));
        }
    }

    #[test]
    fn missing_and_resets_lose_what_they_say() {
        let d = Difficulty { missing: 0.25, resets: 0.5, ..Default::default() };
        let mut r = ChaCha8Rng::seed_from_u64(1);
        let n = 40_000;
        let (mut lost, mut ecc) = (0, 0.0);
        for _ in 0..n {
            match draw(&mut r, 1.0, &d) {
                None => lost += 1,
                Some((e, _, _)) => ecc += e,
            }
        }
        // 25% lost (binomial sd 0.2%); kept samples: 12.5 errors, half of them reset and seeing
        // a uniform share of the interval (mean ½, floored: ≈ 12.5·½ − ½): ≈ 12.5·¾ − ¼ ≈ 9.1
        let lost = f64::from(lost) / f64::from(n);
        assert!((lost - 0.25).abs() < 0.01, "{lost}");
        let mean = ecc / (f64::from(n) * (1.0 - lost));
        assert!((mean - 9.125).abs() < 0.15, "{mean}");
    }

    #[test]
    fn the_exporter_s_counters_give_back_the_drawn_samples() {
        // small: 16 nodes × 8 GPUs; node 2 carries a precursor from t = 10 s ramping over 10 s
        let f = Facility::preset("small").unwrap();
        let inj = vec![Injected { domain: DomainId(2), start_s: 10.0, ramp_s: 10.0 }];
        let mut e = Exporter::new(&f, inj, Difficulty::default(), 5);
        let mut t = Tracker::new(3600.0);
        let mut per_node = [0.0; 16];
        for step in 0..30 {
            e.step(1.0);
            for (d, total) in per_node.iter_mut().enumerate() {
                let r: Vec<&GpuReading> = e.readings(DomainId(d as u32)).iter().collect();
                let s = t.sample(DomainId(d as u32), SimTime(step), &r, true);
                if step > 0 {
                    *total += s.sample.ecc;
                }
            }
        }
        // healthy nodes: ~0.5 per step over 29 steps (≈ 14.5); node 2 adds 12·x with x ramping
        // 0 → 1 over steps 10–20 and 1 after: 12 · (5.5 + 10) ≈ 186 more
        for (d, &total) in per_node.iter().enumerate() {
            if d == 2 {
                assert!(total > 150.0, "node 2: {total}");
            } else {
                assert!(total < 40.0, "node {d}: {total}");
            }
        }
        let text = e.render();
        assert!(text.contains("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{gpu=\"0\",UUID=\"GPU-node2-0\""));
        assert_eq!(text.lines().filter(|l| l.starts_with("DCGM_FI_DEV_GPU_TEMP{")).count(), 128);
        // a driver reload: node 2's counters restart from zero
        e.reset_counters(DomainId(2));
        e.step(1.0);
        assert!(e.readings(DomainId(2))[0].get(Series::EccSbe).unwrap() < 40.0);
    }
}
