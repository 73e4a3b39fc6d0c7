//! The `slurm` policy's pass: Slurm 22.05's main scheduler and `sched/backfill` over
//! `select/cons_tres` node selection, so that a twin of a Slurm cluster starts jobs when the
//! cluster would. Each rule cites the Slurm documentation (and, where the documentation is
//! silent, the 22.05 source it follows: `backfill.c`, `cons_common/job_test.c`,
//! `cons_tres/job_test.c`).
//!
//! **Time limits** are whole minutes (sbatch(1) `--time`): a walltime is rounded up to the next
//! minute at submission, and the job is killed then. A limit above the default partition's
//! `MaxTime` (or the QOS's `MaxWall`) is refused.
//!
//! **Main scheduler** (slurm.conf(5) `SchedulerParameters`, "default_queue_depth"; the
//! "Scheduling Configuration Guide"): on every event (submission, end, node change) it tests
//! pending jobs in priority order, at most `default_queue_depth` of them, starting each that
//! fits now; the first that does not fit blocks its partition, and every later job waits with
//! reason Priority. Jobs over an account limit or not yet eligible are skipped, not blocking.
//! The main scheduler ignores backfill reservations: it only ever starts jobs in strict order.
//!
//! **Backfill scheduler** (sched_config "bf_*", the "Backfill" section of the Scheduling
//! Configuration Guide): every `bf_interval` seconds it walks the queue in priority order (at
//! most `bf_max_job_test` jobs, at most `bf_max_job_user` per user) over a map of future node
//! availability that starts empty:
//! - a job's window is `[start, start + limit]`; nodes reserved in the map for a higher-priority
//!   job whose reservation overlaps the window — `begin ≤ window end` inclusive, so a job whose
//!   end falls exactly on a reservation's (rounded) start may not use those nodes — are off
//!   limits;
//! - on the remaining nodes the select plugin's will-run test finds the earliest start: now if
//!   the job fits on free GPUs; else running jobs' GPUs are released in order of their end
//!   (start + limit), in batches: the first batch takes every job ending within 30 s after the
//!   first end rounded up to a 30 s boundary, later batches a window that doubles each time, and
//!   the start is the end of the *last* job released in the batch that made the job fit
//!   (22.05's estimate, coarser than the earliest possible start);
//! - a job that can start now starts; a job that can only start later gets a reservation of the
//!   nodes the test chose, from its start to its end (start + limit), **both rounded down** to
//!   `bf_resolution` (at least one resolution long; so a reservation may end before the job's
//!   limit would, and a later job may be planned into that gap), for **every** tested job whose
//!   start lies within `bf_window` — not only the queue head;
//! - when the found start lies after the time some reserved nodes are released (`later_start`),
//!   or the chosen nodes collide with a reservation overlapping its own rounded `[begin, end)`
//!   (`_test_resv_overlap`: strict on both sides), the job is tested again from that time.
//!
//! Reservations hold whole nodes, as Slurm's backfill map does: a 1-GPU job reserved on a node
//! keeps later backfill candidates off the node's other GPUs during its window.
//!
//! **Node selection** (`select/cons_tres`, topology.conf(5) with `topology/tree`): a job takes
//! ⌈GPUs / GPUs per node⌉ nodes with its share free on each. With a tree, the leaf switch whose
//! count of suitable nodes is the smallest that suffices (best fit), the lowest-numbered nodes
//! within it; a job no single leaf holds spans leaves, largest count first. Without a tree, the
//! single node with the fewest free GPUs that suffices, or the lowest-numbered nodes.
//!
//! Not modelled: preemption, advance reservations (refused), fabrik's power cap and energy-aware
//! modifier (Slurm has neither), the time the controller itself needs.

use super::Scheduler;
use crate::explain::Reason;
use crate::NoFit;
use crate::SchedError;
use fabrik_model::slurm_sched::SlurmSched;
use fabrik_model::{DomainId, Facility, GpuTypeId, JobId, JobSpec, Secs, SimTime};

/// Bound on how often one job is retested from a later time in one backfill cycle.
const MAX_TRIES: usize = 64;
/// 22.05's will-run test: the first batch window, seconds.
const TIME_WINDOW_S: u64 = 30;

pub(in crate::scheduler) struct SlurmState {
    pub(super) cfg: SlurmSched,
    /// The first change (job or node state) no backfill cycle has seen yet. Cycles run on the
    /// grid of `bf_interval` seconds; a cycle without changes is skipped, as Slurm's backfill
    /// agent skips one (`_more_work`).
    changed_at: Option<SimTime>,
    /// Nodes of each candidate switch (the facility's leaf groups) in Slurm's node order.
    switches: Vec<Vec<DomainId>>,
    /// Each node's class: its GPU type and GPUs per node (the facility's pools of one type and
    /// size are one class: an imported cluster has a pool per leaf switch, and a Slurm job may
    /// span switches).
    node_class: Vec<usize>,
    classes: Vec<(GpuTypeId, u32)>,
    /// Backfill map: reservations of this cycle.
    map: Vec<Resv>,
    /// Unix time of `SimTime(0)`: Slurm rounds absolute times (to `bf_resolution`, and the
    /// will-run test's 30 s windows), so a replay of a cluster's trace rounds where it did.
    pub(super) origin: u64,
}

#[derive(Debug, Clone)]
struct Resv {
    begin: SimTime,
    end: SimTime,
    nodes: Vec<DomainId>,
}

impl SlurmState {
    pub(super) fn new(f: &Facility) -> SlurmState {
        let mut classes: Vec<(GpuTypeId, u32)> = Vec::new();
        for p in &f.pools {
            if !classes.contains(&(p.gpu_type, p.domain_gpus)) {
                classes.push((p.gpu_type, p.domain_gpus));
            }
        }
        SlurmState {
            cfg: f.slurm.clone(),
            changed_at: None,
            switches: f.groups.iter().map(|g| g.domain_ids().collect()).collect(),
            node_class: f
                .domains
                .iter()
                .map(|d| {
                    let p = &f.pools[d.pool.idx()];
                    classes.iter().position(|&c| c == (p.gpu_type, p.domain_gpus)).unwrap_or(0)
                })
                .collect(),
            classes,
            map: Vec::new(),
            origin: 0,
        }
    }

    /// Rounds the time limit up to whole minutes and refuses one above the partition's
    /// `MaxTime` (sbatch: "Requested time limit is invalid").
    pub(super) fn admit(&self, spec: &mut JobSpec) -> Result<(), SchedError> {
        spec.walltime = whole_minutes(spec.walltime);
        if let Some(max) = self.cfg.max_time_s(&spec.qos.to_string()) {
            if spec.walltime.0 > max {
                return Err(SchedError::Invalid(format!(
                    "job '{}': time limit {} min exceeds the partition/QOS limit of {} min",
                    spec.name,
                    spec.walltime.0 / 60,
                    max / 60
                )));
            }
        }
        Ok(())
    }

    /// cons_tres's choice of nodes for `gpus` GPUs of `gpu_type` among `usable` nodes with
    /// `free` GPUs each, into `out`; false if they do not suffice.
    fn select(
        &self,
        gpus: u32,
        gpu_type: Option<GpuTypeId>,
        free: &[u32],
        usable: &[bool],
        out: &mut Vec<(DomainId, u32)>,
    ) -> bool {
        for (p, &(ty, cap)) in self.classes.iter().enumerate() {
            if gpu_type.is_some_and(|t| t != ty) || cap == 0 {
                continue;
            }
            let nodes = gpus.div_ceil(cap);
            let per = gpus.div_ceil(nodes);
            let ok = |d: DomainId| self.node_class[d.idx()] == p && usable[d.idx()] && free[d.idx()] >= per;
            let chosen = if self.cfg.topology_tree {
                self.by_switch(nodes as usize, &ok)
            } else {
                self.without_tree(nodes as usize, p, per, free, &ok)
            };
            if let Some(chosen) = chosen {
                out.clear();
                let mut left = gpus;
                for d in chosen {
                    let n = per.min(left);
                    out.push((d, n));
                    left -= n;
                }
                out.sort_by_key(|p| p.0);
                return true;
            }
        }
        false
    }

    /// topology/tree: best-fitting leaf switch, else leaves by suitable-node count.
    fn by_switch(&self, need: usize, ok: &dyn Fn(DomainId) -> bool) -> Option<Vec<DomainId>> {
        let counts: Vec<usize> = self.switches.iter().map(|s| s.iter().filter(|&&d| ok(d)).count()).collect();
        if counts.iter().sum::<usize>() < need {
            return None;
        }
        let mut used = vec![false; self.switches.len()];
        let mut chosen = Vec::with_capacity(need);
        while chosen.len() < need {
            let rem = need - chosen.len();
            // _topo_choose_best_switch: a switch that fits beats one that does not; among
            // fitting ones the fewest nodes, among the others the most; first on ties
            let mut best: Option<usize> = None;
            for (i, &c) in counts.iter().enumerate() {
                if used[i] || c == 0 {
                    continue;
                }
                best = match best {
                    None => Some(i),
                    Some(b) => {
                        let (fi, fb) = (c >= rem, counts[b] >= rem);
                        let better = match (fi, fb) {
                            (true, true) => c < counts[b],
                            (true, false) => true,
                            (false, true) => false,
                            (false, false) => c > counts[b],
                        };
                        Some(if better { i } else { b })
                    }
                };
            }
            let b = best?;
            used[b] = true;
            chosen.extend(self.switches[b].iter().copied().filter(|&d| ok(d)).take(rem));
        }
        Some(chosen)
    }

    /// No tree: the best-fitting single node, or the lowest-numbered suitable nodes.
    fn without_tree(
        &self,
        need: usize,
        pool: usize,
        per: u32,
        free: &[u32],
        ok: &dyn Fn(DomainId) -> bool,
    ) -> Option<Vec<DomainId>> {
        let nodes = (0..self.node_class.len() as u32).map(DomainId).filter(|d| self.node_class[d.idx()] == pool);
        if need == 1 {
            return nodes.filter(|&d| ok(d)).min_by_key(|d| (free[d.idx()] - per, d.0)).map(|d| vec![d]);
        }
        let v: Vec<DomainId> = nodes.filter(|&d| ok(d)).take(need).collect();
        (v.len() == need).then_some(v)
    }
}

/// Rounding down to multiples of `res` seconds of the wall clock, for a run whose second 0 is
/// Unix time `origin` (times before the first boundary round to 0).
fn floor_on(origin: u64, res: u64) -> impl Fn(SimTime) -> SimTime {
    let o = origin % res;
    move |t: SimTime| SimTime(((t.0 + o) / res * res).saturating_sub(o))
}

pub(super) fn whole_minutes(w: Secs) -> Secs {
    Secs(w.0.div_ceil(60).max(1).saturating_mul(60))
}

impl Scheduler {
    /// The Unix time of this run's `SimTime(0)` (0 live, where times are Unix seconds; a
    /// replayed trace's first submission in the twin). Only the `slurm` policy uses it: Slurm
    /// rounds absolute times.
    pub fn set_clock_origin(&mut self, unix: u64) {
        if let Some(st) = self.slurm.as_mut() {
            st.origin = unix;
        }
    }

    /// Free GPUs per node now (0 on nodes out of service) and whether each is in service.
    fn slurm_free(&self) -> (Vec<u32>, Vec<bool>) {
        let n = self.cluster.domain_count();
        let up: Vec<bool> = (0..n).map(|d| !self.cluster.is_down(DomainId(d as u32))).collect();
        let free = (0..n).map(|d| if up[d] { self.cluster.domain_free(DomainId(d as u32)) } else { 0 }).collect();
        (free, up)
    }

    /// One pass of the `slurm` policy at `now` (see the module documentation).
    pub(super) fn schedule_slurm(&mut self, st: &mut SlurmState, now: SimTime, started: &mut Vec<JobId>) {
        let interval = st.cfg.bf_interval_s.max(1);
        let backfill = self.policy.backfill();
        if self.wakeup.is_some_and(|w| w <= now) {
            self.dirty = true;
        }
        if self.dirty && st.changed_at.is_none() {
            st.changed_at = Some(now);
        }
        // the first grid point (phase + k · interval) at or after the change
        let phase = st.cfg.bf_phase_s % interval;
        let grid = |t: SimTime| SimTime(t.0.saturating_sub(phase).div_ceil(interval).saturating_mul(interval) + phase);
        let bf_due = backfill && st.changed_at.is_some_and(|c| grid(c) <= now);
        if !self.dirty && !bf_due {
            return;
        }
        self.pass += 1;
        self.wakeup = None;
        if self.dirty {
            self.dirty = false;
            self.slurm_main(st, now, started);
        }
        if bf_due {
            let before = started.len();
            self.slurm_backfill(st, now, started);
            // the cycle's own starts are a change the next cycle sees
            st.changed_at = (started.len() > before).then_some(SimTime(now.0 + 1));
        }
        self.pending.retain(|&id| self.jobs[id.idx()].state.is_waiting());
        // wake for the next cycle while anything waits and changed, and when a job becomes
        // eligible
        let mut wake = if backfill && !self.pending.is_empty() { st.changed_at.map(grid) } else { None };
        for &id in &self.pending {
            if let Some(at) = self.jobs[id.idx()].spec.earliest_start.filter(|&t| t > now) {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        self.wakeup = wake;
        self.wake_for_after(now, started);
    }

    /// The main scheduler: strict priority order until the first job that cannot start.
    fn slurm_main(&mut self, st: &SlurmState, now: SimTime, started: &mut Vec<JobId>) {
        let depth = st.cfg.default_queue_depth as usize;
        let (mut free, up) = self.slurm_free();
        let mut tested = 0;
        let mut head: Option<JobId> = None;
        for i in 0..self.pending.len() {
            let id = self.pending[i];
            if let Some(h) = head {
                self.set_why(id, Reason::BehindQueueHead { head: h });
                continue;
            }
            // Slurm skips a job with unmet dependencies (reason Dependency) without blocking
            if let Some(why) = self.dependency_wait(id) {
                self.set_why(id, why);
                continue;
            }
            let spec = &self.jobs[id.idx()].spec;
            let (gpus, gpu_type, account) = (spec.gpus, spec.gpu_type, spec.account);
            if let Some(at) = spec.earliest_start.filter(|&t| t > now) {
                self.set_why(id, Reason::WaitingForEarliestStart { at });
                continue;
            }
            if let Some((node, limit)) = self.over_limit(account, gpus) {
                let account = self.tenants.get(node).path.clone();
                self.set_why(id, Reason::AccountAtLimit { account, limit });
                continue;
            }
            if tested >= depth {
                break;
            }
            tested += 1;
            let mut parts = std::mem::take(&mut self.scratch);
            let fits = st.select(gpus, gpu_type, &free, &up, &mut parts);
            self.scratch = parts;
            if fits {
                for &(d, n) in &self.scratch {
                    free[d.idx()] -= n;
                }
                self.start(id, now, started);
            } else {
                let no_fit = self.slurm_no_fit(st, gpus, gpu_type, &free);
                self.set_why(id, Reason::Resources { no_fit });
                head = Some(id);
            }
        }
    }

    fn slurm_no_fit(&self, st: &SlurmState, gpus: u32, gpu_type: Option<GpuTypeId>, free: &[u32]) -> NoFit {
        let total: u64 = (0..free.len())
            .filter(|&d| gpu_type.is_none_or(|t| st.classes[st.node_class[d]].0 == t))
            .map(|d| u64::from(free[d]))
            .sum();
        if total < u64::from(gpus) {
            NoFit::NotEnoughFree { free: total, need: gpus }
        } else {
            NoFit::NoDomain { need: gpus }
        }
    }

    /// One backfill cycle (see the module documentation).
    fn slurm_backfill(&mut self, st: &mut SlurmState, now: SimTime, started: &mut Vec<JobId>) {
        st.map.clear();
        let (max_test, max_user) = (st.cfg.bf_max_job_test as usize, st.cfg.bf_max_job_user as usize);
        let res = st.cfg.bf_resolution_s.max(1);
        let floor = floor_on(st.origin, res);
        // the node-space map: from now to now + bf_window, both rounded down to bf_resolution
        let map_start = floor(now);
        let window_end = floor(now + Secs(st.cfg.bf_window_min * 60));
        let order: Vec<JobId> = self.pending.clone();
        // free GPUs and nodes in service, once per cycle (kept current as the cycle starts jobs)
        let (mut free, up) = self.slurm_free();
        let mut tested = 0;
        let mut per_user: std::collections::BTreeMap<u32, usize> = Default::default();
        for (pos, &id) in order.iter().enumerate() {
            if !self.jobs[id.idx()].state.is_waiting() {
                continue;
            }
            if tested >= max_test {
                for &rest in &order[pos..] {
                    if self.jobs[rest.idx()].state.is_waiting() {
                        self.set_why(rest, Reason::BeyondBackfillDepth { position: pos, depth: max_test });
                    }
                }
                break;
            }
            // a job with unmet dependencies gets no backfill reservation (Slurm tests only
            // jobs that are eligible)
            if self.dependency_wait(id).is_some() {
                continue;
            }
            let spec = &self.jobs[id.idx()].spec;
            let (gpus, gpu_type, account, limit) = (spec.gpus, spec.gpu_type, spec.account, spec.walltime);
            let eligible = spec.earliest_start.unwrap_or(now).max(now);
            if self.over_limit(account, gpus).is_some() {
                continue; // Slurm: an account limit gives no reservation
            }
            if max_user > 0 {
                let n = per_user.entry(account.0).or_default();
                if *n >= max_user {
                    continue;
                }
                *n += 1;
            }
            tested += 1;
            let mut start_res = eligible;
            for _ in 0..MAX_TRIES {
                if start_res > window_end {
                    break;
                }
                let (usable, later_start) =
                    self.slurm_usable(st, &up, start_res, start_res + limit, map_start, window_end);
                let Some((t, parts)) = self.will_run(st, gpus, gpu_type, &free, &usable, now) else {
                    match later_start {
                        Some(l) => {
                            start_res = l;
                            continue;
                        }
                        None => break,
                    }
                };
                let t = t.max(start_res);
                if t <= now {
                    for &(d, n) in &parts {
                        free[d.idx()] -= n;
                    }
                    self.scratch = parts;
                    self.start(id, now, started);
                    break;
                }
                // backfill.c: start and end both rounded *down* to bf_resolution (so a reservation
                // may end before the job's limit does), and at least one resolution long
                let begin = floor(t);
                let end = floor(t + limit).max(begin + Secs(res));
                // _test_resv_overlap: a record of the map overlapping [begin, end) in which a
                // chosen node is reserved
                let collides = st
                    .map
                    .iter()
                    .any(|r| r.end > begin && r.begin < end && parts.iter().any(|p| r.nodes.contains(&p.0)));
                if collides {
                    start_res = if start_res == t { SimTime(t.0 + res) } else { t };
                    continue;
                }
                if let Some(l) = later_start.filter(|&l| t > l) {
                    start_res = l;
                    continue;
                }
                self.set_why(id, Reason::HoldsReservation { start_at: t });
                if t <= window_end {
                    let nodes = parts.iter().map(|p| p.0).collect();
                    st.map.push(Resv { begin, end, nodes });
                }
                break;
            }
        }
    }

    /// Nodes a job with window `[from, to]` may use (in service, not reserved for a job tested
    /// earlier in this cycle), and `later_start`, as backfill.c walks its node-space map: the
    /// map's records run from `map_start` to `map_end`, split at every reservation's begin and
    /// end; `later_start` is the end of the first record (ending after `from`) after which a
    /// node becomes available, or, when none does inside the window, the end of the record
    /// after the first one beyond the window.
    fn slurm_usable(
        &self,
        st: &SlurmState,
        up: &[bool],
        from: SimTime,
        to: SimTime,
        map_start: SimTime,
        map_end: SimTime,
    ) -> (Vec<bool>, Option<SimTime>) {
        let n = up.len();
        let mut bounds: Vec<SimTime> = vec![map_start, map_end.max(map_start + Secs(1))];
        for r in &st.map {
            for t in [r.begin, r.end] {
                if t > map_start && t < map_end {
                    bounds.push(t);
                }
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        let recs = bounds.len() - 1;
        // nodes free of reservations during record k
        let avail_of = |k: usize| -> Vec<bool> {
            let mut v = up.to_vec();
            for r in st.map.iter().filter(|r| r.begin <= bounds[k] && r.end > bounds[k]) {
                for d in &r.nodes {
                    v[d.idx()] = false;
                }
            }
            v
        };
        let mut avail = up.to_vec();
        let mut later: Option<SimTime> = None;
        for k in 0..recs {
            let (begin, end) = (bounds[k], bounds[k + 1]);
            let has_next = k + 1 < recs;
            if end > from && has_next && later.is_none() {
                let (cur, next) = (avail_of(k), avail_of(k + 1));
                if (0..n).any(|d| up[d] && next[d] && !(avail[d] && cur[d])) {
                    later = Some(end);
                }
            }
            if end <= from {
                continue;
            }
            if begin <= to {
                let cur = avail_of(k);
                for d in 0..n {
                    avail[d] = avail[d] && cur[d];
                }
            } else {
                if later.is_none() && has_next && k + 2 < recs {
                    later = Some(bounds[k + 2]);
                }
                break;
            }
        }
        (avail, later)
    }

    /// The select plugin's will-run test: when and where the job could start on `usable`
    /// nodes with `free` GPUs now, releasing running jobs' GPUs at their ends in 22.05's
    /// batches.
    fn will_run(
        &self,
        st: &SlurmState,
        gpus: u32,
        gpu_type: Option<GpuTypeId>,
        free_now: &[u32],
        usable: &[bool],
        now: SimTime,
    ) -> Option<(SimTime, Vec<(DomainId, u32)>)> {
        let mut free = free_now.to_vec();
        let mut out = Vec::new();
        if st.select(gpus, gpu_type, &free, usable, &mut out) {
            return Some((now, out));
        }
        // running jobs holding GPUs on usable nodes, by end
        let ends: Vec<(SimTime, JobId)> = self
            .running
            .iter()
            .copied()
            .filter(|&(_, r)| self.jobs[r.idx()].parts().iter().any(|p| usable[p.0.idx()]))
            .collect();
        let mut window = TIME_WINDOW_S;
        let mut first_end: Option<u64> = None;
        // the first end rounded up to the next 30 s boundary of the wall clock
        let o = st.origin % TIME_WINDOW_S;
        let round_up = |t: u64| t + (TIME_WINDOW_S - (t + o) % TIME_WINDOW_S);
        let mut k = 0;
        while k < ends.len() {
            let mut last = ends[k].0;
            let mut removed = 0;
            while k < ends.len() {
                let (end, r) = ends[k];
                let fe = *first_end.get_or_insert(round_up(end.0));
                for &(d, n) in self.jobs[r.idx()].parts() {
                    if usable[d.idx()] {
                        free[d.idx()] += n;
                    }
                }
                last = end;
                k += 1;
                removed += 1;
                match ends.get(k) {
                    Some(&(next, _)) if next.0 > fe + window => break,
                    None => break,
                    _ if removed > 200 => break,
                    _ => {}
                }
            }
            // job_test.c: `do { time_window *= 2 } while (next end > end_time + time_window)` —
            // the window doubles after every batch, at least once
            let fe = first_end.unwrap_or(0);
            loop {
                window = window.saturating_mul(2);
                if ends.get(k).is_none_or(|&(next, _)| next.0 <= fe + window) || window >= 366 * 86_400 {
                    break;
                }
            }
            if st.select(gpus, gpu_type, &free, usable, &mut out) {
                return Some((last.max(now), out));
            }
        }
        None
    }
}
