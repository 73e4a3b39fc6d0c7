//! Trace-driven failures: a CSV of `time,node,component[,repair]` — when (seconds or `3h`), which
//! NVLink domain (index), which root cause (a name in the run's `RootCauses`, case-insensitive;
//! `leaf switch` takes the node's whole leaf group down; anything else counts as "other", or the
//! mix's last cause), and optionally for how long it stays out of service (else the cause's typical
//! repair time; 4 h for a switch).

use crate::workload::WorkloadError;
use fabrik_model::reliability::RootCauses;
use fabrik_model::units::parse_duration;
use fabrik_model::{DomainId, Facility, Secs, SimTime};
use serde::Serialize;
use std::io::Read;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureEvent {
    pub at: SimTime,
    pub domain: DomainId,
    /// Index into the run's root causes (one past the last: a leaf switch).
    pub cause: u8,
    pub repair: Secs,
}

pub fn read_trace(
    input: impl Read,
    origin: &str,
    f: &Facility,
    causes: &RootCauses,
) -> Result<Vec<FailureEvent>, WorkloadError> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(input);
    let file_err = |msg: String| WorkloadError::File { origin: origin.into(), msg };
    let headers = rdr.headers().map_err(|e| file_err(e.to_string()))?.clone();
    let col = |n: &str| headers.iter().position(|h| h == n);
    let need = |n: &str| col(n).ok_or_else(|| file_err(format!("missing column '{n}' (time,node,component[,repair])")));
    let (c_time, c_node, c_comp) = (need("time")?, need("node")?, need("component")?);
    let c_repair = col("repair");
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| file_err(e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let get = |c: usize| rec.get(c).unwrap_or("");
        let bad =
            |field: &str, m: String| WorkloadError::Line { origin: origin.into(), line, msg: format!("{field}: {m}") };
        let at = parse_duration(get(c_time)).map_err(|m| bad("time", m))?;
        let node: u32 =
            get(c_node).parse().map_err(|_| bad("node", format!("'{}' is not a domain index", get(c_node))))?;
        if node as usize >= f.domains.len() {
            return Err(bad("node", format!("{node} is not a domain of {} (0..{})", f.name, f.domains.len())));
        }
        let comp = get(c_comp);
        let cause = if comp.eq_ignore_ascii_case("leaf switch") {
            crate::failure_model::switch_cause(causes)
        } else {
            causes.index_of(comp)
        };
        let repair = match c_repair.map(get).filter(|v| !v.is_empty()) {
            Some(v) => parse_duration(v).map_err(|m| bad("repair", m))?,
            None if cause == crate::failure_model::switch_cause(causes) => 14_400,
            None => causes.causes[cause].repair_s as u64,
        };
        out.push(FailureEvent { at: SimTime(at), domain: DomainId(node), cause: cause as u8, repair: Secs(repair) });
    }
    out.sort_by_key(|e| (e.at, e.domain));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_traces_parse_and_name_bad_fields() {
        let f = Facility::preset("tiny").unwrap();
        let t = "time,node,component,repair\n2h,1,HBM3 memory,\n250,0,software bug,10m\n";
        let e = read_trace(t.as_bytes(), "f.csv", &f, &RootCauses::ft_hsdp()).unwrap();
        assert_eq!(e[0], FailureEvent { at: SimTime(250), domain: DomainId(0), cause: 4, repair: Secs(600) });
        assert_eq!(e[1].repair, Secs(86_400));
        let bad = read_trace(
            "time,node,component\n5,7,x\n".as_bytes(),
            "f.csv",
            &f,
            &fabrik_model::reliability::RootCauses::ft_hsdp(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(bad, "f.csv: line 2: node: 7 is not a domain of tiny (0..2)");
        let bad = read_trace("time,node\n".as_bytes(), "f.csv", &f, &fabrik_model::reliability::RootCauses::ft_hsdp())
            .unwrap_err()
            .to_string();
        assert!(bad.contains("missing column 'component'"), "{bad}");
    }
}
