//! Energy in the twin: the configuration (PUE model, grid signals, cap, renewables, battery,
//! the energy-aware modifier) and the ledger, which integrates IT power hour by hour into
//! facility power, on-site supply, battery flows and grid draw, and so into emissions and cost.
//!
//! Battery dispatch (a simple documented rule): it charges only from on-site renewable surplus
//! (losing the round-trip efficiency on the way in) and discharges to cover load in "dirty"
//! hours — hours whose carbon intensity (or, without an intensity series, price) is above the
//! series' mean; without any series it discharges whenever there is load.

use fabrik_model::energy::{Battery, PueModel};
use fabrik_model::grid::Hourly;
use fabrik_model::SimTime;
use serde::Serialize;

/// What the energy-aware modifier minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    Carbon,
    Price,
    /// Carbon intensity and price, each relative to its mean, added.
    Both,
}

/// The energy-aware modifier's settings (see `fabrik_sched::EnergyAware`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AwareConfig {
    pub objective: Objective,
    pub mode: fabrik_sched::DeferMode,
    pub horizon_h: u64,
    pub min_gain: f64,
    pub guard_s: u64,
    /// The share of a later window's power cap deferrals leave free
    /// (`fabrik_sched::EnergyAware::headroom`).
    pub headroom: f64,
}

impl Default for AwareConfig {
    fn default() -> Self {
        // Look a day ahead, defer only for a 5% better window, keep an hour of slack, leave 5%
        // of a capped window's power to the work arriving into it.
        AwareConfig {
            objective: Objective::Carbon,
            mode: fabrik_sched::DeferMode::Queue,
            horizon_h: 24,
            min_gain: 0.05,
            guard_s: 3600,
            headroom: fabrik_sched::power::DEFAULT_HEADROOM,
        }
    }
}

impl AwareConfig {
    /// The scheduler's modifier for these settings on `signal`.
    pub fn modifier(&self, signal: Hourly) -> fabrik_sched::EnergyAware {
        fabrik_sched::EnergyAware::new(
            signal,
            self.horizon_h,
            self.min_gain,
            fabrik_model::Secs(self.guard_s),
            self.mode,
        )
        .with_headroom(self.headroom)
    }
}

/// How IT power becomes facility power, grid draw, emissions and cost.
#[derive(Debug, Clone, Serialize)]
pub struct EnergyConfig {
    pub pue: PueModel,
    /// Outside temperature, °C, per hour (drives the PUE model; without it the PUE is its base).
    #[serde(skip)]
    pub temperature: Option<Hourly>,
    pub temperature_source: String,
    /// Facility power cap (the grid connection), MW, per hour.
    #[serde(skip)]
    pub cap_mw: Option<Hourly>,
    pub cap_source: String,
    pub zone: String,
    /// Annual mean intensity, used when no hourly series is given.
    pub gco2_per_kwh: f64,
    /// Annual mean price, used when no hourly series is given.
    pub price_eur_per_mwh: f64,
    /// Hourly carbon intensity from the run's start (synthetic profile or a grid export).
    #[serde(skip)]
    pub intensity: Option<Hourly>,
    pub intensity_source: String,
    /// Hourly electricity price, €/MWh.
    #[serde(skip)]
    pub price: Option<Hourly>,
    pub price_source: String,
    /// On-site renewable output, MW per hour.
    #[serde(skip)]
    pub renewables_mw: Option<Hourly>,
    pub renewables_source: String,
    pub battery: Option<Battery>,
    /// The carbon- or price-aware modifier for flexible jobs.
    pub aware: Option<AwareConfig>,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        let de = fabrik_model::grid::find("DE").expect("DE is a built-in zone");
        // PUE 1.25: Cottier et al. 2024 (Epoch) cost-model default outside hyperscalers.
        EnergyConfig {
            pue: PueModel::constant(1.25),
            temperature: None,
            temperature_source: "none".to_string(),
            cap_mw: None,
            cap_source: "none".to_string(),
            zone: de.code.to_string(),
            gco2_per_kwh: de.gco2_per_kwh,
            price_eur_per_mwh: de.price_eur_per_mwh,
            intensity: None,
            intensity_source: "annual mean".to_string(),
            price: None,
            price_source: "annual mean".to_string(),
            renewables_mw: None,
            renewables_source: "none".to_string(),
            battery: None,
            aware: None,
        }
    }
}

impl EnergyConfig {
    pub fn pue_at(&self, t: SimTime) -> f64 {
        match &self.temperature {
            Some(temp) => self.pue.at(temp.at(t)),
            None => self.pue.base,
        }
    }
    pub fn intensity_at(&self, t: SimTime) -> f64 {
        self.intensity.as_ref().map_or(self.gco2_per_kwh, |h| h.at(t))
    }
    pub fn price_at(&self, t: SimTime) -> f64 {
        self.price.as_ref().map_or(self.price_eur_per_mwh, |h| h.at(t))
    }
    pub fn renewables_w(&self, t: SimTime) -> f64 {
        self.renewables_mw.as_ref().map_or(0.0, |h| h.at(t) * 1e6)
    }
    /// The PUE per hour over `hours` (for the scheduler's cap).
    pub fn pue_hourly(&self, hours: usize) -> Hourly {
        match &self.temperature {
            Some(t) => {
                Hourly { values: (0..t.values.len().min(hours.max(1))).map(|h| self.pue.at(t.values[h])).collect() }
            }
            None => Hourly::constant(self.pue.base),
        }
    }
    /// The series the modifier minimises, if it is on.
    pub fn aware_signal(&self) -> Option<Hourly> {
        let a = self.aware?;
        let rel = |h: &Option<Hourly>, flat: f64| match h {
            Some(h) => {
                let m = h.mean().max(1e-12);
                h.values.iter().map(|v| v / m).collect()
            }
            None => vec![flat],
        };
        Some(match a.objective {
            Objective::Carbon => self.intensity.clone().unwrap_or(Hourly::constant(self.gco2_per_kwh)),
            Objective::Price => self.price.clone().unwrap_or(Hourly::constant(self.price_eur_per_mwh)),
            Objective::Both => {
                let (c, p) = (rel(&self.intensity, 1.0), rel(&self.price, 1.0));
                let n = c.len().max(p.len());
                Hourly { values: (0..n).map(|h| c[h % c.len()] + p[h % p.len()]).collect() }
            }
        })
    }
    /// Whether the battery discharges in the hour of `t`.
    fn dirty(&self, t: SimTime, means: (Option<f64>, Option<f64>)) -> bool {
        match means {
            (Some(m), _) => self.intensity_at(t) > m,
            (None, Some(m)) => self.price_at(t) > m,
            (None, None) => true,
        }
    }
    /// Whether anything here changes by the hour in a way the scheduler must see.
    pub fn needs_hourly_ticks(&self) -> bool {
        self.cap_mw.as_ref().is_some_and(|c| c.values.len() > 1)
            || self.aware.is_some()
            || self.renewables_mw.is_some()
            || self.battery.is_some()
            || (self.cap_mw.is_some() && self.temperature.is_some())
    }
}

/// One hour of the ledger.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HourRow {
    pub it_mwh: f64,
    pub facility_mwh: f64,
    /// Renewable energy used on site directly.
    pub renewable_mwh: f64,
    pub battery_in_mwh: f64,
    pub battery_out_mwh: f64,
    pub curtailed_mwh: f64,
    pub grid_mwh: f64,
    pub emissions_t: f64,
    pub cost_eur: f64,
    /// Highest facility power within the hour, MW.
    pub peak_facility_mw: f64,
}

/// What a job, an account or a group of jobs used and caused: IT energy, the facility energy,
/// grid emissions and cost that it carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Share {
    pub it_mwh: f64,
    pub facility_mwh: f64,
    pub emissions_t: f64,
    pub cost_eur: f64,
}

impl std::ops::AddAssign for Share {
    fn add_assign(&mut self, o: Share) {
        self.it_mwh += o.it_mwh;
        self.facility_mwh += o.facility_mwh;
        self.emissions_t += o.emissions_t;
        self.cost_eur += o.cost_eur;
    }
}

/// Integrates piecewise-constant IT power into hourly energy flows.
#[derive(Debug, Clone)]
pub struct Ledger {
    last: u64,
    it_w: f64,
    pub soc_mwh: f64,
    pub rows: Vec<HourRow>,
    pub peak_grid_w: f64,
    means: (Option<f64>, Option<f64>),
}

impl Ledger {
    pub fn new(cfg: &EnergyConfig) -> Ledger {
        Ledger {
            last: 0,
            it_w: 0.0,
            soc_mwh: 0.0,
            rows: Vec::new(),
            peak_grid_w: 0.0,
            means: (cfg.intensity.as_ref().map(Hourly::mean), cfg.price.as_ref().map(Hourly::mean)),
        }
    }

    /// IT power from now on, W.
    pub fn set_it_w(&mut self, w: f64) {
        self.it_w = w;
    }

    /// Books [last, now) at the current IT power, hour by hour.
    pub fn advance(&mut self, cfg: &EnergyConfig, now: SimTime) {
        let mut a = self.last;
        while a < now.0 {
            let h = a / 3600;
            let b = ((h + 1) * 3600).min(now.0);
            self.segment(cfg, h, (b - a) as f64);
            a = b;
        }
        self.last = self.last.max(now.0);
    }

    fn segment(&mut self, cfg: &EnergyConfig, h: u64, dt: f64) {
        let t = SimTime(h * 3600);
        let dt_h = dt / 3600.0;
        let facility_w = self.it_w * cfg.pue_at(t);
        let r_w = cfg.renewables_w(t);
        let used_w = r_w.min(facility_w);
        let surplus_w = r_w - used_w;
        let (mut charge_w, mut discharge_w) = (0.0, 0.0);
        if let Some(b) = cfg.battery {
            let room_mwh = (b.capacity_mwh - self.soc_mwh).max(0.0);
            charge_w = surplus_w.min(b.power_mw * 1e6).min(room_mwh * 1e6 / (b.round_trip * dt_h));
            self.soc_mwh += charge_w * dt_h / 1e6 * b.round_trip;
            if self.dirty(cfg, t) {
                discharge_w = (facility_w - used_w).min(b.power_mw * 1e6).min(self.soc_mwh * 1e6 / dt_h);
                self.soc_mwh = (self.soc_mwh - discharge_w * dt_h / 1e6).max(0.0);
            }
        }
        let grid_w = facility_w - used_w - discharge_w;
        let mwh = |w: f64| w * dt_h / 1e6;
        if self.rows.len() <= h as usize {
            self.rows.resize(h as usize + 1, HourRow::default());
        }
        let row = &mut self.rows[h as usize];
        row.it_mwh += mwh(self.it_w);
        row.facility_mwh += mwh(facility_w);
        row.renewable_mwh += mwh(used_w);
        row.battery_in_mwh += mwh(charge_w);
        row.battery_out_mwh += mwh(discharge_w);
        row.curtailed_mwh += mwh(surplus_w - charge_w);
        row.grid_mwh += mwh(grid_w);
        // g/kWh × MWh = kg; ÷ 1,000 → t
        row.emissions_t += mwh(grid_w) * cfg.intensity_at(t) / 1000.0;
        row.cost_eur += mwh(grid_w) * cfg.price_at(t);
        row.peak_facility_mw = row.peak_facility_mw.max(facility_w / 1e6);
        self.peak_grid_w = self.peak_grid_w.max(grid_w);
    }

    fn dirty(&self, cfg: &EnergyConfig, t: SimTime) -> bool {
        cfg.dirty(t, self.means)
    }

    /// IT watts that renewables and the battery could supply now beyond the load.
    pub fn green_headroom_it_w(&self, cfg: &EnergyConfig, now: SimTime) -> f64 {
        let pue = cfg.pue_at(now);
        let facility_w = self.it_w * pue;
        let r_w = cfg.renewables_w(now);
        let surplus = (r_w - facility_w).max(0.0);
        let deficit = (facility_w - r_w).max(0.0);
        let battery = cfg.battery.map_or(0.0, |b| {
            if self.dirty(cfg, now) {
                ((b.power_mw * 1e6).min(self.soc_mwh * 1e6) - deficit).max(0.0)
            } else {
                0.0
            }
        });
        (surplus + battery) / pue
    }

    /// The share of a draw of `watts` over [from, to): its IT energy, and each hour's facility
    /// energy, emissions and cost per IT MWh (which carry its PUE, on-site supply and grid
    /// intensity or price) times the draw's IT energy in that hour.
    pub fn attribute(&self, from: SimTime, to: SimTime, watts: f64) -> Share {
        let mut s = Share::default();
        let mut a = from.0;
        while a < to.0 {
            let h = a / 3600;
            let b = ((h + 1) * 3600).min(to.0);
            let mwh = watts * (b - a) as f64 / 3.6e9;
            s.it_mwh += mwh;
            if let Some(r) = self.rows.get(h as usize).filter(|r| r.it_mwh > 0.0) {
                s.facility_mwh += mwh * r.facility_mwh / r.it_mwh;
                s.emissions_t += mwh * r.emissions_t / r.it_mwh;
                s.cost_eur += mwh * r.cost_eur / r.it_mwh;
            }
            a = b;
        }
        s
    }

    /// Sums of all rows.
    pub fn totals(&self) -> HourRow {
        self.rows.iter().fold(HourRow::default(), |mut s, r| {
            s.it_mwh += r.it_mwh;
            s.facility_mwh += r.facility_mwh;
            s.renewable_mwh += r.renewable_mwh;
            s.battery_in_mwh += r.battery_in_mwh;
            s.battery_out_mwh += r.battery_out_mwh;
            s.curtailed_mwh += r.curtailed_mwh;
            s.grid_mwh += r.grid_mwh;
            s.emissions_t += r.emissions_t;
            s.cost_eur += r.cost_eur;
            s.peak_facility_mw = s.peak_facility_mw.max(r.peak_facility_mw);
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_battery_moves_midday_surplus_into_dirty_hours() {
        // IT 1 MW at PUE 1 for 3 hours; renewables 3 MW in hour 0, nothing after; intensity
        // 100 / 500 / 500 g/kWh (mean 366.7: hours 1 and 2 are dirty); battery 1 MWh, 2 MW,
        // round trip 0.8.
        // Hour 0: 1 MWh used on site, surplus 2 MW: charge limited by room 1 MWh / 0.8 = 1.25
        // MWh drawn → stored 1 MWh; curtailed 0.75 MWh; grid 0.
        // Hour 1: discharge 1 MW for the hour (1 MWh, empties it); grid 0.
        // Hour 2: grid 1 MWh at 500 g = 0.5 t, EUR 100.
        let cfg = EnergyConfig {
            pue: PueModel::constant(1.0),
            intensity: Some(Hourly { values: vec![100.0, 500.0, 500.0] }),
            price: Some(Hourly::constant(100.0)),
            renewables_mw: Some(Hourly { values: vec![3.0, 0.0, 0.0] }),
            battery: Some(Battery { capacity_mwh: 1.0, power_mw: 2.0, round_trip: 0.8 }),
            ..EnergyConfig::default()
        };
        let mut l = Ledger::new(&cfg);
        l.set_it_w(1e6);
        assert!((l.green_headroom_it_w(&cfg, SimTime(0)) - 2e6).abs() < 1e-6);
        l.advance(&cfg, SimTime(3 * 3600));
        let r = &l.rows;
        assert!((r[0].renewable_mwh - 1.0).abs() < 1e-9);
        assert!((r[0].battery_in_mwh - 1.25).abs() < 1e-9);
        assert!((r[0].curtailed_mwh - 0.75).abs() < 1e-9);
        assert_eq!(r[0].grid_mwh, 0.0);
        assert!((r[1].battery_out_mwh - 1.0).abs() < 1e-9);
        assert!(r[1].grid_mwh.abs() < 1e-9);
        assert!((r[2].grid_mwh - 1.0).abs() < 1e-9);
        let s = l.totals();
        assert!((s.emissions_t - 0.5).abs() < 1e-9);
        assert!((s.cost_eur - 100.0).abs() < 1e-9);
        // a job of 0.5 MW over hours 1–2 carries half of hour 2's emissions (0.25 t), none of
        // hour 1's
        let s = l.attribute(SimTime(3600), SimTime(3 * 3600), 0.5e6);
        assert!((s.it_mwh - 1.0).abs() < 1e-9);
        assert!((s.facility_mwh - 1.0).abs() < 1e-9);
        assert!((s.emissions_t - 0.25).abs() < 1e-9);
        assert!((s.cost_eur - 50.0).abs() < 1e-9);
    }

    #[test]
    fn pue_follows_the_temperature_and_the_aware_signal_blends_carbon_and_price() {
        let cfg = EnergyConfig {
            pue: PueModel::temperature_dependent(),
            temperature: Some(Hourly { values: vec![10.0, 28.0] }),
            intensity: Some(Hourly { values: vec![100.0, 300.0] }),
            price: Some(Hourly { values: vec![50.0, 50.0, 200.0] }),
            aware: Some(AwareConfig { objective: Objective::Both, ..AwareConfig::default() }),
            ..EnergyConfig::default()
        };
        assert_eq!(cfg.pue_at(SimTime(0)), 1.15);
        assert!((cfg.pue_at(SimTime(3600)) - 1.25).abs() < 1e-12);
        // carbon relative to 200: 0.5, 1.5; price relative to 100: 0.5, 0.5, 2.0
        let s = cfg.aware_signal().unwrap();
        assert_eq!(s.values, vec![1.0, 2.0, 2.5]);
        let mut l = Ledger::new(&cfg);
        l.set_it_w(1e6);
        l.advance(&cfg, SimTime(7200));
        // facility 1.15 + 1.25 MWh; emissions 1.15 × 100 + 1.25 × 300 kg = 0.49 t
        assert!((l.totals().facility_mwh - 2.4).abs() < 1e-9);
        assert!((l.totals().emissions_t - 0.49).abs() < 1e-9);
    }

    #[test]
    fn green_headroom_counts_surplus_and_in_dirty_hours_the_battery() {
        // IT 0.5 MW at PUE 1; 3 MW of renewables in hour 0, none after; intensity 100 then 500
        // (hour 1 dirty). Hour 0: headroom = surplus 2.5 MW; the battery stores 1 MWh (charging
        // at 1.25 MW, round trip 0.8). Hour 1: no surplus; the battery could give min(2 MW,
        // 1 MWh over an hour) = 1 MW, of which 0.5 MW already covers the load: headroom 0.5 MW.
        let cfg = EnergyConfig {
            pue: PueModel::constant(1.0),
            intensity: Some(Hourly { values: vec![100.0, 500.0] }),
            renewables_mw: Some(Hourly { values: vec![3.0, 0.0] }),
            battery: Some(Battery { capacity_mwh: 1.0, power_mw: 2.0, round_trip: 0.8 }),
            ..EnergyConfig::default()
        };
        let mut l = Ledger::new(&cfg);
        l.set_it_w(0.5e6);
        assert!((l.green_headroom_it_w(&cfg, SimTime(0)) - 2.5e6).abs() < 1e-6);
        l.advance(&cfg, SimTime(3600));
        assert!((l.soc_mwh - 1.0).abs() < 1e-12);
        assert!((l.green_headroom_it_w(&cfg, SimTime(3600)) - 0.5e6).abs() < 1e-6);
    }
}
