//! Electricity grids: annual mean carbon intensity and industrial price per zone, each with its
//! source (../shared/reference/hardware-and-energy.md).

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    pub code: &'static str,
    pub name: &'static str,
    /// Annual mean grid carbon intensity, gCO2/kWh.
    pub gco2_per_kwh: f64,
    pub carbon_source: &'static str,
    /// Industrial electricity price, €/MWh.
    pub price_eur_per_mwh: f64,
    pub price_source: &'static str,
}

const SDES: &str = "SDES, Key figures on climate 2023 (IEA data), 2021";
/// New industrial contracts, Germany, July 2024: 16.65 ct/kWh (BDEW via Statista).
const DE_PRICE: f64 = 166.5;
const DE_PRICE_SRC: &str = "BDEW via Statista: new industrial contracts, July 2024, 16.65 ct/kWh";
const NO_PRICE: &str = "assumption: no price in the reference; German industrial price used";

pub const ZONES: &[Zone] = &[
    Zone {
        code: "EU",
        name: "EU-27",
        gco2_per_kwh: 264.0,
        carbon_source: SDES,
        price_eur_per_mwh: DE_PRICE,
        price_source: NO_PRICE,
    },
    Zone {
        code: "DE",
        name: "Germany",
        gco2_per_kwh: 384.0,
        carbon_source: SDES,
        price_eur_per_mwh: DE_PRICE,
        price_source: DE_PRICE_SRC,
    },
    Zone {
        code: "FR",
        name: "France",
        gco2_per_kwh: 60.0,
        carbon_source: SDES,
        price_eur_per_mwh: DE_PRICE,
        price_source: NO_PRICE,
    },
    Zone {
        code: "SE",
        name: "Sweden",
        gco2_per_kwh: 34.0,
        carbon_source: SDES,
        price_eur_per_mwh: DE_PRICE,
        price_source: NO_PRICE,
    },
    Zone {
        code: "PL",
        name: "Poland",
        gco2_per_kwh: 748.0,
        carbon_source: SDES,
        price_eur_per_mwh: DE_PRICE,
        price_source: NO_PRICE,
    },
    Zone {
        code: "US",
        name: "United States",
        gco2_per_kwh: 429.0,
        carbon_source: "LLaMA paper / Patterson et al. 2021 (upper end of 385-429)",
        price_eur_per_mwh: DE_PRICE,
        price_source: NO_PRICE,
    },
];

/// Looks a zone up by code, case-insensitively.
pub fn find(code: &str) -> Option<&'static Zone> {
    ZONES.iter().find(|z| z.code.eq_ignore_ascii_case(code))
}
