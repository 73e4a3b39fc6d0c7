//! Reports as Parquet (`--jobs-parquet`, `--energy-parquet`): the per-job rows and the hourly
//! energy ledger, column for column as their CSVs, for pandas, polars or DuckDB. Times on a
//! calendar are strings (`2026-12-06 20:46:50Z`), null where the workload has no calendar.

use anyhow::{Context, Result};
use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::sync::Arc;

/// One column: its name and values.
enum Col {
    I64(&'static str, Vec<i64>),
    F64(&'static str, Vec<f64>),
    Bool(&'static str, Vec<bool>),
    /// Strings; `None` is null.
    Str(&'static str, Vec<Option<String>>),
}

impl Col {
    fn schema(&self) -> String {
        match self {
            Col::I64(n, _) => format!("REQUIRED INT64 {n};"),
            Col::F64(n, _) => format!("REQUIRED DOUBLE {n};"),
            Col::Bool(n, _) => format!("REQUIRED BOOLEAN {n};"),
            Col::Str(n, _) => format!("OPTIONAL BYTE_ARRAY {n} (UTF8);"),
        }
    }
}

fn write(name: &str, cols: Vec<Col>) -> Result<Vec<u8>> {
    let schema = format!("message {name} {{ {} }}", cols.iter().map(Col::schema).collect::<Vec<_>>().join(" "));
    let schema = Arc::new(parse_message_type(&schema).context("Parquet schema")?);
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::UNCOMPRESSED).build());
    let mut out = Vec::new();
    let mut w = SerializedFileWriter::new(&mut out, schema, props)?;
    let mut rg = w.next_row_group()?;
    for c in &cols {
        let mut cw = rg.next_column()?.context("a column writer per schema column")?;
        match c {
            Col::I64(_, v) => {
                cw.typed::<Int64Type>().write_batch(v, None, None)?;
            }
            Col::F64(_, v) => {
                cw.typed::<DoubleType>().write_batch(v, None, None)?;
            }
            Col::Bool(_, v) => {
                cw.typed::<BoolType>().write_batch(v, None, None)?;
            }
            Col::Str(_, v) => {
                let values: Vec<ByteArray> = v.iter().flatten().map(|s| ByteArray::from(s.as_str())).collect();
                let defs: Vec<i16> = v.iter().map(|s| i16::from(s.is_some())).collect();
                cw.typed::<ByteArrayType>().write_batch(&values, Some(&defs), None)?;
            }
        }
        cw.close()?;
    }
    rg.close()?;
    w.close()?;
    Ok(out)
}

fn i(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// Empty strings (no calendar, no deadline) as nulls.
fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The per-job rows (`Report::jobs`).
pub fn jobs(rows: &[fabrik_twin::report::JobRow]) -> Result<Vec<u8>> {
    let ints = |f: fn(&fabrik_twin::report::JobRow) -> u64| rows.iter().map(|r| i(f(r))).collect::<Vec<_>>();
    let floats = |f: fn(&fabrik_twin::report::JobRow) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    write(
        "jobs",
        vec![
            Col::I64("job_id", ints(|r| u64::from(r.job_id))),
            Col::Str("name", rows.iter().map(|r| Some(r.name.clone())).collect()),
            Col::Str("account", rows.iter().map(|r| Some(r.account.clone())).collect()),
            Col::I64("gpus", ints(|r| u64::from(r.gpus))),
            Col::Str("gpu_type", rows.iter().map(|r| Some(r.gpu_type.clone())).collect()),
            Col::Str("state", rows.iter().map(|r| Some(r.state.to_string())).collect()),
            Col::I64("submit_s", ints(|r| r.submit_s)),
            Col::I64("start_s", ints(|r| r.start_s)),
            Col::I64("end_s", ints(|r| r.end_s)),
            Col::Str("submit_utc", rows.iter().map(|r| opt(&r.submit_utc)).collect()),
            Col::Str("start_utc", rows.iter().map(|r| opt(&r.start_utc)).collect()),
            Col::Str("end_utc", rows.iter().map(|r| opt(&r.end_utc)).collect()),
            Col::I64("wait_s", ints(|r| r.wait_s)),
            Col::I64("jct_s", ints(|r| r.jct_s)),
            Col::F64("bounded_slowdown", floats(|r| r.bounded_slowdown)),
            Col::Bool("killed_at_walltime", rows.iter().map(|r| r.killed_at_walltime).collect()),
            Col::I64("preemptions", ints(|r| u64::from(r.preemptions))),
            Col::I64("interruptions", ints(|r| u64::from(r.interruptions))),
            Col::F64("it_kwh", floats(|r| r.it_kwh)),
            Col::F64("facility_kwh", floats(|r| r.facility_kwh)),
            Col::F64("emissions_kg", floats(|r| r.emissions_kg)),
            Col::F64("cost_eur", floats(|r| r.cost_eur)),
            Col::F64("power_fraction", floats(|r| r.power_fraction)),
            Col::I64("deferrals", ints(|r| u64::from(r.deferrals))),
        ],
    )
}

/// The hourly energy ledger (`Report::energy.hours`), hour 0 at the run's start.
pub fn hours(rows: &[fabrik_twin::energy::HourRow]) -> Result<Vec<u8>> {
    let f = |g: fn(&fabrik_twin::energy::HourRow) -> f64| rows.iter().map(g).collect::<Vec<_>>();
    write(
        "energy",
        vec![
            Col::I64("hour", (0..rows.len() as i64).collect()),
            Col::F64("it_mwh", f(|r| r.it_mwh)),
            Col::F64("facility_mwh", f(|r| r.facility_mwh)),
            Col::F64("renewable_mwh", f(|r| r.renewable_mwh)),
            Col::F64("battery_in_mwh", f(|r| r.battery_in_mwh)),
            Col::F64("battery_out_mwh", f(|r| r.battery_out_mwh)),
            Col::F64("curtailed_mwh", f(|r| r.curtailed_mwh)),
            Col::F64("grid_mwh", f(|r| r.grid_mwh)),
            Col::F64("emissions_t", f(|r| r.emissions_t)),
            Col::F64("cost_eur", f(|r| r.cost_eur)),
            Col::F64("peak_facility_mw", f(|r| r.peak_facility_mw)),
        ],
    )
}
