//! Allocation state of the facility's GPUs and topology-aware, gang-aware placement.
//!
//! Placement rules (documented in ARCHITECTURE.md):
//! - A job that fits in one NVLink domain never spans two. It takes the domain with the fewest
//!   free GPUs that still holds it (best fit, which keeps whole domains free for larger jobs);
//!   among equally good domains, the one whose free count changed most recently.
//! - A larger job takes whole free domains (plus one partially free domain for a remainder that
//!   is not a multiple of the domain size) inside one leaf group: the group with the fewest free
//!   GPUs that can hold it (best fit), lowest group id among equals. Inside the group it takes the
//!   lowest-numbered whole domains and the best-fitting remainder domain.
//! - A job larger than any leaf group — counting only GPUs in service — spans the fewest groups:
//!   groups ordered by whole free domains (most first, lowest id among equals).
//! - A job asks for one GPU type or any; a gang never mixes pools (GPU type and domain size).
//!   Pools are tried in facility order.
//!
//! Free capacity is indexed: each pool keeps intrusive lists of domains by free-GPU count and
//! each group keeps its count of whole free domains, so placement never scans the facility.

use fabrik_model::{DomainId, Facility, GpuTypeId, GroupId, PoolId};
use serde::Serialize;

const NIL: u32 = u32::MAX;

/// GPUs taken on each domain, sorted by domain.
pub type Parts = Vec<(DomainId, u32)>;

/// Why a job could not be placed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoFit {
    /// Fewer free GPUs (of an allowed type) than the gang needs.
    NotEnoughFree { free: u64, need: u32 },
    /// Enough GPUs are free, but no NVLink domain has this many free at once.
    NoDomain { need: u32 },
    /// Enough GPUs are free, but no single leaf group can hold the gang.
    NoGroup { need: u32 },
    /// A gang larger than one group needs this many whole free domains.
    NoWholeDomains { need_domains: u32, free_domains: u32 },
    /// No pool of the requested type could ever hold it.
    TooLarge { need: u32 },
    /// Its pool could hold it, but not with the domains now out of service (failed or
    /// drained): `in_service` GPUs are left.
    OutOfService { need: u32, in_service: u64 },
}

#[derive(Debug, Clone)]
struct PoolState {
    gpu_type: GpuTypeId,
    domain_gpus: u32,
    /// heads[k]: first domain with exactly k free GPUs.
    heads: Vec<u32>,
    /// group_heads[k]: first group with exactly k whole free domains.
    group_heads: Vec<u32>,
    first_group: u32,
    groups: u32,
    free: u64,
    total: u64,
    max_group_gpus: u32,
    /// The largest group's GPUs in service (out-of-service domains excluded): a gang larger
    /// than this spans groups, since no single group could ever hold it now.
    max_group_in_service: u32,
    /// Domains with every GPU free.
    full_free: u32,
    /// GPUs in domains out of service.
    down: u64,
}

#[derive(Debug, Clone)]
struct GroupState {
    first_domain: u32,
    domains: u32,
    full_free: u32,
    free: u32,
    /// Domains out of service.
    down: u32,
}

/// Which GPUs are free. All mutation goes through [`Cluster::allocate`] and [`Cluster::release`],
/// which check that no GPU is allocated twice or released twice.
#[derive(Debug, Clone)]
pub struct Cluster {
    free: Vec<u32>,
    dom_group: Vec<u32>,
    dom_pool: Vec<u32>,
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Groups listed by their count of whole free domains, per pool (as domains by free GPUs).
    group_next: Vec<u32>,
    group_prev: Vec<u32>,
    pools: Vec<PoolState>,
    groups: Vec<GroupState>,
    scratch: Vec<(u64, u32)>,
    /// Failed or drained domains: no free GPUs, and GPUs returned to them vanish.
    down: Vec<bool>,
    /// Bumped on every change of free counts or of what is in service: a failed search stays
    /// failed while it stands.
    version: u64,
    /// Per pool, the smallest gangs a search found no room for at `failed_version`, within one
    /// group (`.0`) and spanning groups (`.1`); `u32::MAX` when none failed. See `known_failure`.
    failed: Vec<(u32, u32)>,
    failed_version: u64,
}

/// Whether a gang might fit pool `p` (its type, enough free GPUs, enough whole free domains when
/// it spans domains) with `hidden` (free GPUs, whole free domains) taken out of its counts.
fn pool_may_fit(p: &PoolState, gpus: u32, gpu_type: Option<GpuTypeId>, hidden: (u64, u32)) -> bool {
    gpu_type.is_none_or(|t| t == p.gpu_type)
        && p.free - hidden.0 >= u64::from(gpus)
        && (gpus <= p.domain_gpus || p.full_free - hidden.1 >= gpus / p.domain_gpus)
}

/// Puts `x` at the front of the intrusive list starting at `head` (links in `next`/`prev`).
fn push_front(next: &mut [u32], prev: &mut [u32], head: &mut u32, x: u32) {
    next[x as usize] = *head;
    prev[x as usize] = NIL;
    if *head != NIL {
        prev[*head as usize] = x;
    }
    *head = x;
}

/// Takes `x` out of the intrusive list starting at `head`.
fn remove(next: &mut [u32], prev: &mut [u32], head: &mut u32, x: u32) {
    let (p, n) = (prev[x as usize], next[x as usize]);
    if p != NIL {
        next[p as usize] = n;
    } else {
        *head = n;
    }
    if n != NIL {
        prev[n as usize] = p;
    }
}

impl Cluster {
    pub fn new(f: &Facility) -> Cluster {
        let n = f.domains.len();
        let mut c = Cluster {
            free: vec![0; n],
            dom_group: f.domains.iter().map(|d| d.group.0).collect(),
            dom_pool: f.domains.iter().map(|d| d.pool.0).collect(),
            next: vec![NIL; n],
            prev: vec![NIL; n],
            group_next: vec![NIL; f.groups.len()],
            group_prev: vec![NIL; f.groups.len()],
            pools: f
                .pools
                .iter()
                .enumerate()
                .map(|(i, p)| PoolState {
                    gpu_type: p.gpu_type,
                    domain_gpus: p.domain_gpus,
                    heads: vec![NIL; p.domain_gpus as usize + 1],
                    group_heads: vec![
                        NIL;
                        (p.first_group..p.first_group + p.groups)
                            .map(|g| f.groups[g as usize].domains as usize)
                            .max()
                            .unwrap_or(0)
                            + 1
                    ],
                    first_group: p.first_group,
                    groups: p.groups,
                    free: 0,
                    full_free: 0,
                    down: 0,
                    total: f.pool_gpus(PoolId(i as u32)),
                    max_group_gpus: (p.first_group..p.first_group + p.groups)
                        .map(|g| f.group_gpus(GroupId(g)))
                        .max()
                        .unwrap_or(0),
                    max_group_in_service: 0,
                })
                .collect(),
            groups: f
                .groups
                .iter()
                .map(|g| GroupState {
                    first_domain: g.first_domain,
                    domains: g.domains,
                    full_free: 0,
                    free: 0,
                    down: 0,
                })
                .collect(),
            scratch: Vec::new(),
            down: vec![false; n],
            version: 0,
            failed: vec![(u32::MAX, u32::MAX); f.pools.len()],
            failed_version: u64::MAX,
        };
        for pool in &mut c.pools {
            pool.max_group_in_service = pool.max_group_gpus;
        }
        for g in 0..c.groups.len() as u32 {
            c.link_group(g, 0);
        }
        // Link in reverse so that the lowest domain id heads each list at the start.
        for d in (0..n as u32).rev() {
            let cap = c.pools[c.dom_pool[d as usize] as usize].domain_gpus;
            c.link(d, 0);
            c.set_free(d, cap);
        }
        c
    }

    /// NVLink domains in the facility.
    pub fn domain_count(&self) -> usize {
        self.free.len()
    }
    pub fn domain_free(&self, d: DomainId) -> u32 {
        self.free[d.idx()]
    }
    pub fn domain_pool(&self, d: DomainId) -> PoolId {
        PoolId(self.dom_pool[d.idx()])
    }
    pub fn domain_capacity(&self, d: DomainId) -> u32 {
        self.pools[self.dom_pool[d.idx()] as usize].domain_gpus
    }
    pub fn pool_free(&self, p: PoolId) -> u64 {
        self.pools[p.idx()].free
    }
    pub fn free_gpus(&self) -> u64 {
        self.pools.iter().map(|p| p.free).sum()
    }
    pub fn total_gpus(&self) -> u64 {
        self.pools.iter().map(|p| p.total).sum()
    }
    pub fn group_free(&self, g: GroupId) -> u32 {
        self.groups[g.idx()].free
    }
    /// A copy in which only `parts` are free: the GPUs of an advance reservation, to place the
    /// jobs that run inside it.
    pub fn restricted_to(&self, parts: &[(DomainId, u32)]) -> Cluster {
        let mut c = self.clone();
        for d in 0..c.free.len() as u32 {
            c.set_free(d, 0);
        }
        c.release(parts);
        c
    }

    /// The largest gang a pool of this type (any type when `None`) can hold when empty.
    pub fn max_gang(&self, gpu_type: Option<GpuTypeId>) -> u64 {
        self.pools.iter().filter(|p| gpu_type.is_none_or(|t| t == p.gpu_type)).map(|p| p.total).max().unwrap_or(0)
    }
    /// The largest gang a pool of this type can hold with its out-of-service domains excluded.
    pub fn max_gang_in_service(&self, gpu_type: Option<GpuTypeId>) -> u64 {
        self.pools
            .iter()
            .filter(|p| gpu_type.is_none_or(|t| t == p.gpu_type))
            .map(|p| p.total - p.down)
            .max()
            .unwrap_or(0)
    }
    /// Free GPUs in the pools a job of this type may use.
    pub fn free_for(&self, gpu_type: Option<GpuTypeId>) -> u64 {
        self.pools.iter().filter(|p| gpu_type.is_none_or(|t| t == p.gpu_type)).map(|p| p.free).sum()
    }

    fn link(&mut self, d: u32, k: u32) {
        let pool = &mut self.pools[self.dom_pool[d as usize] as usize];
        push_front(&mut self.next, &mut self.prev, &mut pool.heads[k as usize], d);
    }

    fn unlink(&mut self, d: u32, k: u32) {
        let pool = &mut self.pools[self.dom_pool[d as usize] as usize];
        remove(&mut self.next, &mut self.prev, &mut pool.heads[k as usize], d);
    }

    fn link_group(&mut self, g: u32, k: u32) {
        let pool = &mut self.pools[self.dom_pool[self.groups[g as usize].first_domain as usize] as usize];
        push_front(&mut self.group_next, &mut self.group_prev, &mut pool.group_heads[k as usize], g);
    }

    fn unlink_group(&mut self, g: u32, k: u32) {
        let pool = &mut self.pools[self.dom_pool[self.groups[g as usize].first_domain as usize] as usize];
        remove(&mut self.group_next, &mut self.group_prev, &mut pool.group_heads[k as usize], g);
    }

    /// Groups of pool `p` with at least `k` whole free domains, in no particular order.
    fn groups_with_full_free(&self, p: usize, k: u32) -> impl Iterator<Item = u32> + '_ {
        let buckets = self.pools[p].group_heads.len();
        ((k as usize).min(buckets)..buckets).flat_map(move |b| self.bucket(p, b))
    }

    /// Groups of pool `p` with exactly `k` whole free domains, in no particular order.
    fn bucket(&self, p: usize, k: usize) -> impl Iterator<Item = u32> + '_ {
        let h = self.pools[p].group_heads[k];
        std::iter::successors((h != NIL).then_some(h), move |&g| {
            let n = self.group_next[g as usize];
            (n != NIL).then_some(n)
        })
    }

    fn set_free(&mut self, d: u32, new: u32) {
        let old = self.free[d as usize];
        if old == new {
            return;
        }
        self.version += 1;
        self.unlink(d, old);
        self.link(d, new);
        self.free[d as usize] = new;
        let pool = &mut self.pools[self.dom_pool[d as usize] as usize];
        let cap = pool.domain_gpus;
        pool.free = pool.free + u64::from(new) - u64::from(old);
        let gi = self.dom_group[d as usize];
        let g = &mut self.groups[gi as usize];
        g.free = g.free + new - old;
        let full_before = g.full_free;
        if old == cap {
            g.full_free -= 1;
            pool.full_free -= 1;
        }
        if new == cap {
            g.full_free += 1;
            pool.full_free += 1;
        }
        let full_after = g.full_free;
        if full_after != full_before {
            self.unlink_group(gi, full_before);
            self.link_group(gi, full_after);
        }
    }

    /// Takes the given GPUs.
    ///
    /// # Panics
    /// If a domain has fewer free GPUs than asked: that would allocate a GPU twice, a bug in the
    /// caller, never an input error.
    pub fn allocate(&mut self, parts: &[(DomainId, u32)]) {
        for &(d, n) in parts {
            let f = self.free[d.idx()];
            assert!(n <= f, "GPU allocated twice: domain {} has {f} free, {n} asked", d.0);
            self.set_free(d.0, f - n);
        }
    }

    /// Gives the given GPUs back.
    ///
    /// # Panics
    /// If this would free more GPUs than a domain has: a double release, a bug in the caller.
    pub fn release(&mut self, parts: &[(DomainId, u32)]) {
        for &(d, n) in parts {
            if self.down[d.idx()] {
                continue;
            }
            let f = self.free[d.idx()];
            let cap = self.domain_capacity(d);
            assert!(f + n <= cap, "GPU released twice: domain {} has {f} of {cap} free, {n} returned", d.0);
            self.set_free(d.0, f + n);
        }
    }

    /// Takes a domain out of service (failure, drain) or returns it. The caller first stops
    /// every job on it; a domain comes back with all its GPUs free.
    pub fn set_down(&mut self, d: DomainId, down: bool) {
        if self.down[d.idx()] == down {
            return;
        }
        self.down[d.idx()] = down;
        let capacity = u64::from(self.domain_capacity(d));
        let pool = &mut self.pools[self.dom_pool[d.idx()] as usize];
        if down {
            pool.down += capacity;
        } else {
            pool.down -= capacity;
        }
        self.count_group_down(d, down);
        let cap = if down { 0 } else { self.domain_capacity(d) };
        self.set_free(d.0, cap);
    }

    /// Keeps the group's count of domains out of service and its pool's largest in-service
    /// group up to date (failures and repairs are rare: a scan of the pool's groups is fine).
    fn count_group_down(&mut self, d: DomainId, down: bool) {
        self.version += 1;
        let g = &mut self.groups[self.dom_group[d.idx()] as usize];
        if down {
            g.down += 1;
        } else {
            g.down -= 1;
        }
        let p = self.dom_pool[d.idx()] as usize;
        let (first, n, dg) = (self.pools[p].first_group, self.pools[p].groups, self.pools[p].domain_gpus);
        self.pools[p].max_group_in_service = (first..first + n)
            .map(|g| (self.groups[g as usize].domains - self.groups[g as usize].down) * dg)
            .max()
            .unwrap_or(0);
    }

    /// Back in service but wholly allocated (to the advance reservation that held it).
    pub fn set_up_allocated(&mut self, d: DomainId) {
        if self.down[d.idx()] {
            let capacity = u64::from(self.domain_capacity(d));
            self.pools[self.dom_pool[d.idx()] as usize].down -= capacity;
            self.count_group_down(d, false);
        }
        self.down[d.idx()] = false;
    }

    /// GPUs of pool `p` that hold work (allocated): neither free nor out of service.
    pub fn pool_busy(&self, p: PoolId) -> u64 {
        let pool = &self.pools[p.idx()];
        pool.total - pool.free - pool.down
    }
    pub fn pool_total(&self, p: PoolId) -> u64 {
        self.pools[p.idx()].total
    }
    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// The order of the free lists (domains by free GPUs, groups by whole free domains): pool
    /// by pool, bucket by bucket, each list front to back. Placement breaks ties by it, so a
    /// snapshot carries it for a restored brain to place as the original would.
    pub fn list_order(&self) -> (Vec<u32>, Vec<u32>) {
        let walk = |heads: &[u32], next: &[u32], out: &mut Vec<u32>| {
            for &h in heads {
                let mut x = h;
                while x != NIL {
                    out.push(x);
                    x = next[x as usize];
                }
            }
        };
        let (mut domains, mut groups) = (Vec::with_capacity(self.free.len()), Vec::with_capacity(self.groups.len()));
        for p in &self.pools {
            walk(&p.heads, &self.next, &mut domains);
            walk(&p.group_heads, &self.group_next, &mut groups);
        }
        (domains, groups)
    }

    /// Rebuilds the free lists in the order `list_order` gave (each list keeps the relative
    /// order of its members there). Refuses what is not a permutation of the domains and groups.
    pub fn set_list_order(&mut self, domains: &[u32], groups: &[u32]) -> Result<(), String> {
        let permutation = |xs: &[u32], n: usize| {
            let mut seen = vec![false; n];
            xs.len() == n && xs.iter().all(|&x| (x as usize) < n && !std::mem::replace(&mut seen[x as usize], true))
        };
        if !permutation(domains, self.free.len()) || !permutation(groups, self.groups.len()) {
            return Err(format!(
                "list order must name each of the {} domains and {} groups once",
                self.free.len(),
                self.groups.len()
            ));
        }
        for p in &mut self.pools {
            p.heads.iter_mut().for_each(|h| *h = NIL);
            p.group_heads.iter_mut().for_each(|h| *h = NIL);
        }
        for &d in domains.iter().rev() {
            self.link(d, self.free[d as usize]);
        }
        for &g in groups.iter().rev() {
            self.link_group(g, self.groups[g as usize].full_free);
        }
        self.version += 1;
        Ok(())
    }

    pub fn is_down(&self, d: DomainId) -> bool {
        self.down[d.idx()]
    }

    /// GPUs in domains that are out of service.
    pub fn down_gpus(&self) -> u64 {
        self.pools.iter().map(|p| p.down).sum()
    }

    /// A cheap necessary condition for [`Cluster::find`] to succeed: some allowed pool has
    /// enough free GPUs and, for a gang larger than a domain, enough whole free domains.
    pub fn may_fit(&self, gpus: u32, gpu_type: Option<GpuTypeId>) -> bool {
        self.pools.iter().any(|p| pool_may_fit(p, gpus, gpu_type, (0, 0)))
    }

    /// [`may_fit`](Cluster::may_fit) as it would answer if on each domain of `caps` jobs could
    /// take at most the given number of GPUs (the EASY hold's budgets): a cheap test that
    /// spares taking the capped GPUs out and back when the gang cannot fit either way.
    pub fn may_fit_capped(
        &mut self,
        gpus: u32,
        gpu_type: Option<GpuTypeId>,
        caps: impl Iterator<Item = (DomainId, u32)>,
    ) -> bool {
        // per pool: free GPUs and whole free domains the caps hide
        let mut hidden = std::mem::take(&mut self.scratch);
        hidden.clear();
        hidden.resize(self.pools.len(), (0, 0));
        for (d, cap) in caps {
            let (free, p) = (self.free[d.idx()], self.dom_pool[d.idx()] as usize);
            if free > cap {
                hidden[p].0 += u64::from(free - cap);
                if free == self.pools[p].domain_gpus {
                    hidden[p].1 += 1;
                }
            }
        }
        let fits = self.pools.iter().zip(&hidden).any(|(p, &h)| pool_may_fit(p, gpus, gpu_type, h));
        self.scratch = hidden;
        fits
    }

    /// Finds GPUs for a gang of `gpus` GPUs of `gpu_type` (any type when `None`), filling `out`.
    /// Does not allocate them.
    pub fn find(&mut self, gpus: u32, gpu_type: Option<GpuTypeId>, out: &mut Parts) -> Result<(), NoFit> {
        out.clear();
        if self.failed_version != self.version {
            self.failed.fill((u32::MAX, u32::MAX));
            self.failed_version = self.version;
        } else if let Some(e) = self.known_failure(gpus, gpu_type) {
            return Err(e);
        }
        let r = self.search(gpus, gpu_type, out);
        if r.is_err() {
            for (p, pool) in self.pools.iter().enumerate() {
                if gpu_type.is_none_or(|t| t == pool.gpu_type) && u64::from(gpus) <= pool.total {
                    let f = &mut self.failed[p];
                    let slot = if gpus > pool.max_group_in_service { &mut f.1 } else { &mut f.0 };
                    *slot = (*slot).min(gpus);
                }
            }
        }
        r
    }

    /// What `search` would answer, when a smaller gang already failed in every pool it could
    /// use since the last change — free GPUs only shrink between changes, and no room for a
    /// gang means no room for a larger one placed the same way: within one NVLink domain or
    /// group, or spanning groups. A gang that found no domain with enough free GPUs, or not
    /// enough free GPUs at all, also rules out every larger one (those need whole free
    /// domains). The error is built as `search` builds it, from the pools' counts.
    fn known_failure(&self, gpus: u32, gpu_type: Option<GpuTypeId>) -> Option<NoFit> {
        let mut best: Option<(u64, NoFit)> = None;
        for (p, pool) in self.pools.iter().enumerate() {
            if gpu_type.is_some_and(|t| t != pool.gpu_type) || u64::from(gpus) > pool.total {
                continue;
            }
            let (within, spanning) = self.failed[p];
            let fails = u64::from(gpus) > pool.free
                || if gpus > pool.max_group_in_service {
                    gpus >= spanning || within <= pool.domain_gpus
                } else {
                    gpus >= within
                };
            if !fails {
                return None;
            }
            let free = pool.free;
            let e = if u64::from(gpus) > pool.total - pool.down {
                NoFit::OutOfService { need: gpus, in_service: pool.total - pool.down }
            } else if u64::from(gpus) > free {
                NoFit::NotEnoughFree { free, need: gpus }
            } else if gpus <= pool.domain_gpus {
                NoFit::NoDomain { need: gpus }
            } else if gpus <= pool.max_group_in_service {
                NoFit::NoGroup { need: gpus }
            } else {
                let need_domains = gpus.div_ceil(pool.domain_gpus);
                NoFit::NoWholeDomains { need_domains, free_domains: pool.full_free }
            };
            if best.is_none_or(|(f, _)| free > f) {
                best = Some((free, e));
            }
        }
        Some(best.map_or(NoFit::TooLarge { need: gpus }, |(_, e)| e))
    }

    fn search(&mut self, gpus: u32, gpu_type: Option<GpuTypeId>, out: &mut Parts) -> Result<(), NoFit> {
        let mut best_err: Option<(u64, NoFit)> = None;
        for p in 0..self.pools.len() {
            let pool = &self.pools[p];
            if gpu_type.is_some_and(|t| t != pool.gpu_type) {
                continue;
            }
            if u64::from(gpus) > pool.total {
                continue;
            }
            let free = pool.free;
            let r = if u64::from(gpus) > pool.total - pool.down {
                Err(NoFit::OutOfService { need: gpus, in_service: pool.total - pool.down })
            } else if u64::from(gpus) > free {
                Err(NoFit::NotEnoughFree { free, need: gpus })
            } else if gpus <= pool.domain_gpus {
                self.find_in_domain(p, gpus, out)
            } else if gpus <= pool.max_group_in_service {
                self.find_in_group(p, gpus, out)
            } else {
                self.find_spanning(p, gpus, out)
            };
            match r {
                Ok(()) => {
                    out.sort_unstable_by_key(|x| x.0);
                    return Ok(());
                }
                Err(e) => {
                    if best_err.is_none_or(|(f, _)| free > f) {
                        best_err = Some((free, e));
                    }
                }
            }
        }
        // no pool tried: none of the type is large enough
        Err(best_err.map_or(NoFit::TooLarge { need: gpus }, |(_, e)| e))
    }

    /// Like [`Cluster::find`], but only inside leaf group `group` (advance reservations pinned to
    /// a group).
    pub fn find_in_leaf_group(&mut self, gpus: u32, group: GroupId, out: &mut Parts) -> Result<(), NoFit> {
        out.clear();
        let gs = &self.groups[group.idx()];
        let dsize = self.pools[self.dom_pool[gs.first_domain as usize] as usize].domain_gpus;
        if gpus > gs.domains * dsize {
            return Err(NoFit::TooLarge { need: gpus });
        }
        if gpus > gs.free {
            return Err(NoFit::NotEnoughFree { free: u64::from(gs.free), need: gpus });
        }
        let (full, rem) = if gpus <= dsize { (0, gpus) } else { (gpus / dsize, gpus % dsize) };
        if self.take_from_group(group.idx(), full, rem, dsize, out) {
            out.sort_unstable_by_key(|x| x.0);
            Ok(())
        } else {
            Err(NoFit::NoGroup { need: gpus })
        }
    }

    fn find_in_domain(&self, p: usize, gpus: u32, out: &mut Parts) -> Result<(), NoFit> {
        let pool = &self.pools[p];
        for k in gpus..=pool.domain_gpus {
            let d = pool.heads[k as usize];
            if d != NIL {
                out.push((DomainId(d), gpus));
                return Ok(());
            }
        }
        Err(NoFit::NoDomain { need: gpus })
    }

    /// Whole free domains of group `g` (lowest ids first) plus a best-fit remainder domain.
    fn take_from_group(&self, g: usize, full: u32, rem: u32, dsize: u32, out: &mut Parts) -> bool {
        let gs = &self.groups[g];
        let start = out.len();
        let mut taken = 0;
        let mut rem_dom: Option<(u32, u32)> = None; // (free, domain) best fit for the remainder
        for d in gs.first_domain..gs.first_domain + gs.domains {
            let f = self.free[d as usize];
            if f == dsize && taken < full {
                out.push((DomainId(d), dsize));
                taken += 1;
            } else if rem > 0 && f >= rem && rem_dom.is_none_or(|(bf, _)| f < bf) {
                rem_dom = Some((f, d));
            }
        }
        if taken < full {
            out.truncate(start);
            return false;
        }
        if rem > 0 {
            match rem_dom {
                Some((_, d)) => out.push((DomainId(d), rem)),
                None => {
                    out.truncate(start);
                    return false;
                }
            }
        }
        true
    }

    fn find_in_group(&mut self, p: usize, gpus: u32, out: &mut Parts) -> Result<(), NoFit> {
        let pool = &self.pools[p];
        let dsize = pool.domain_gpus;
        let (full, rem) = (gpus / dsize, gpus % dsize);
        let mut cands = std::mem::take(&mut self.scratch);
        cands.clear();
        for g in self.groups_with_full_free(p, full) {
            let gs = &self.groups[g as usize];
            if gs.free >= gpus {
                cands.push((u64::from(gs.free), g));
            }
        }
        cands.sort_unstable();
        let mut ok = false;
        for &(_, g) in &cands {
            if self.take_from_group(g as usize, full, rem, dsize, out) {
                ok = true;
                break;
            }
        }
        self.scratch = cands;
        if ok {
            Ok(())
        } else {
            Err(NoFit::NoGroup { need: gpus })
        }
    }

    fn find_spanning(&mut self, p: usize, gpus: u32, out: &mut Parts) -> Result<(), NoFit> {
        let pool = &self.pools[p];
        let dsize = pool.domain_gpus;
        let (full, rem) = (gpus / dsize, gpus % dsize);
        let need_domains = full + u32::from(rem > 0);
        let mut cands = std::mem::take(&mut self.scratch);
        cands.clear();
        let free_domains = pool.full_free;
        // Groups with the most whole free domains first, then lowest id: the buckets of groups
        // by their count of whole free domains, from the fullest, each in id order, and only
        // as many groups as the gang still needs.
        let mut need = u64::from(need_domains);
        for k in (1..pool.group_heads.len()).rev() {
            if need == 0 {
                break;
            }
            let from = cands.len();
            cands.extend(self.bucket(p, k).map(|g| (0, g)));
            let groups = (cands.len() - from) as u64;
            let take = groups.min(need.div_ceil(k as u64)) as usize;
            if take < cands.len() - from {
                // the `take` lowest ids, then in order
                cands[from..].select_nth_unstable(take);
                cands.truncate(from + take);
            }
            cands[from..].sort_unstable();
            need = need.saturating_sub(take as u64 * k as u64);
        }
        let mut taken = 0;
        let mut remainder_done = rem == 0;
        for &(_, g) in &cands {
            let gs = &self.groups[g as usize];
            for d in gs.first_domain..gs.first_domain + gs.domains {
                let f = self.free[d as usize];
                if f == dsize && taken < full {
                    out.push((DomainId(d), dsize));
                    taken += 1;
                } else if f == dsize && !remainder_done {
                    out.push((DomainId(d), rem));
                    remainder_done = true;
                }
            }
            if taken == full && remainder_done {
                break;
            }
        }
        self.scratch = cands;
        if taken == full && remainder_done {
            Ok(())
        } else {
            out.clear();
            Err(NoFit::NoWholeDomains { need_domains, free_domains })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(parts: &Parts) -> Vec<(u32, u32)> {
        parts.iter().map(|&(d, n)| (d.0, n)).collect()
    }

    #[test]
    fn capped_domains_count_only_up_to_their_cap() {
        // small = 4 groups × 4 nodes × 8 GPUs (128). Node 0 has 3 free, nodes 1–15 are whole.
        let f = Facility::preset("small").unwrap();
        let mut c = Cluster::new(&f);
        c.allocate(&[(DomainId(0), 5)]);
        let caps = [(DomainId(0), 1), (DomainId(1), 0), (DomainId(2), 8)];
        // hidden: 2 GPUs on node 0, node 1 whole (8 GPUs, one whole domain); node 2's cap is its size
        assert!(c.may_fit_capped(113, None, caps.iter().copied()));
        assert!(!c.may_fit_capped(114, None, caps.iter().copied()));
        // whole domains: 15 free, one hidden -> a 14-node gang may fit, a 15-node one not
        assert!(c.may_fit_capped(14 * 8, None, caps.iter().copied()));
        assert!(!c.may_fit_capped(15 * 8, None, caps.iter().copied()));
        assert!(c.may_fit(15 * 8, None));
    }

    proptest::proptest! {
        /// The capped test answers as `may_fit` does once the capped GPUs are taken out.
        #[test]
        fn the_capped_test_answers_like_taking_the_gpus_out(
            used in proptest::collection::vec(0u32..=8, 16),
            caps in proptest::collection::vec((0u32..16, 0u32..=8), 0..10),
            gpus in 1u32..=128,
        ) {
            let f = Facility::preset("small").unwrap();
            let mut c = Cluster::new(&f);
            for (d, &n) in used.iter().enumerate() {
                c.allocate(&[(DomainId(d as u32), n)]);
            }
            // one cap per domain (the hold names each domain once)
            let mut seen = [false; 16];
            let caps: Vec<(DomainId, u32)> =
                caps.into_iter().filter(|&(d, _)| !std::mem::replace(&mut seen[d as usize], true)).map(|(d, k)| (DomainId(d), k)).collect();
            let capped = c.may_fit_capped(gpus, None, caps.iter().copied());
            for &(d, k) in &caps {
                let hide = c.domain_free(d).saturating_sub(k);
                c.allocate(&[(d, hide)]);
            }
            proptest::prop_assert_eq!(capped, c.may_fit(gpus, None));
        }
    }

    #[test]
    fn small_job_takes_the_best_fitting_domain() {
        // tiny: 2 nodes × 8 GPUs. Take 5 on node 0 (lowest id first), then a 3-GPU job fits
        // exactly in node 0's 3 free GPUs rather than breaking up node 1.
        let f = Facility::preset("tiny").unwrap();
        let mut c = Cluster::new(&f);
        let mut out = Parts::new();
        c.find(5, None, &mut out).unwrap();
        assert_eq!(ids(&out), vec![(0, 5)]);
        c.allocate(&out);
        c.find(3, None, &mut out).unwrap();
        assert_eq!(ids(&out), vec![(0, 3)]);
        c.allocate(&out);
        assert_eq!(c.free_gpus(), 8);
        assert_eq!(c.find(9, None, &mut out), Err(NoFit::NotEnoughFree { free: 8, need: 9 }));
    }

    #[test]
    fn a_job_that_fits_one_domain_never_spans_two() {
        // Two nodes with 4 free each: 8 GPUs are free, but no domain has 6.
        let f = Facility::preset("tiny").unwrap();
        let mut c = Cluster::new(&f);
        c.allocate(&[(DomainId(0), 4), (DomainId(1), 4)]);
        let mut out = Parts::new();
        assert_eq!(c.find(6, None, &mut out), Err(NoFit::NoDomain { need: 6 }));
    }

    #[test]
    fn large_job_takes_whole_domains_in_the_fullest_group_that_holds_it() {
        // small: 4 groups × 4 nodes × 8. Group 0 keeps 2 free nodes, group 1 keeps 3, groups
        // 2 and 3 are empty. A 16-GPU job goes to group 0 (fewest free GPUs that still fit).
        let f = Facility::preset("small").unwrap();
        let mut c = Cluster::new(&f);
        c.allocate(&[(DomainId(0), 8), (DomainId(1), 8), (DomainId(4), 8)]);
        let mut out = Parts::new();
        c.find(16, None, &mut out).unwrap();
        assert_eq!(ids(&out), vec![(2, 8), (3, 8)]);
        // A 24-GPU job no longer fits group 0 (16 free) and takes group 1's three free nodes.
        c.find(24, None, &mut out).unwrap();
        assert_eq!(ids(&out), vec![(5, 8), (6, 8), (7, 8)]);
        // 20 GPUs = 2 whole nodes + 4: group 0 has exactly 2 whole nodes and no remainder node,
        // so group 1 (3 whole nodes, 24 free) is the best fit: 2 whole + remainder on node 7.
        c.find(20, None, &mut out).unwrap();
        assert_eq!(ids(&out), vec![(5, 8), (6, 8), (7, 4)]);
    }

    #[test]
    fn a_group_sized_job_waits_when_only_fragments_are_free() {
        // Every group has one busy node: 96 GPUs free, yet no group has 32.
        let f = Facility::preset("small").unwrap();
        let mut c = Cluster::new(&f);
        c.allocate(&[(DomainId(0), 1), (DomainId(4), 1), (DomainId(8), 1), (DomainId(12), 1)]);
        let mut out = Parts::new();
        assert_eq!(c.find(32, None, &mut out), Err(NoFit::NoGroup { need: 32 }));
        c.find(24, None, &mut out).unwrap();
        assert_eq!(ids(&out), vec![(1, 8), (2, 8), (3, 8)]);
    }

    #[test]
    fn a_job_larger_than_a_group_spans_the_fewest_groups() {
        // small: groups of 32 GPUs. Group 0 has 1 busy node, so a 64-GPU job takes groups 1 and 2
        // (4 whole domains each) rather than starting in group 0.
        let f = Facility::preset("small").unwrap();
        let mut c = Cluster::new(&f);
        c.allocate(&[(DomainId(0), 8)]);
        let mut out = Parts::new();
        c.find(64, None, &mut out).unwrap();
        assert_eq!(ids(&out).iter().map(|x| x.0).collect::<Vec<_>>(), vec![4, 5, 6, 7, 8, 9, 10, 11]);
        c.allocate(&out);
        // 56 GPUs left free: 3 whole nodes in group 0, 4 in group 3.
        assert_eq!(c.free_gpus(), 56);
        c.allocate(&[(DomainId(1), 2)]);
        assert_eq!(c.find(56, None, &mut out), Err(NoFit::NotEnoughFree { free: 54, need: 56 }));
        // 48 GPUs = 6 whole domains: group 3 (4 whole) first, then group 0's nodes 2 and 3.
        c.find(48, None, &mut out).unwrap();
        assert_eq!(ids(&out).iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 3, 12, 13, 14, 15]);
        // One more busy GPU on node 2 leaves 53 free but only 5 whole domains.
        c.allocate(&[(DomainId(2), 1)]);
        assert_eq!(c.find(48, None, &mut out), Err(NoFit::NoWholeDomains { need_domains: 6, free_domains: 5 }));
    }

    #[test]
    fn typed_jobs_only_use_their_pool_and_oversized_jobs_are_too_large() {
        let text = "name='mix'\n[[pool]]\ngpu='H100'\ndomain_gpus=8\ndomains_per_group=2\ngroups=1\n\
                    [[pool]]\ngpu='A100'\ndomain_gpus=8\ndomains_per_group=2\ngroups=1\n";
        let f = Facility::from_toml(text, "mix").unwrap();
        let a100 = f.gpu_type_id("A100");
        let mut c = Cluster::new(&f);
        let mut out = Parts::new();
        c.find(8, a100, &mut out).unwrap();
        assert_eq!(ids(&out), vec![(2, 8)]);
        assert_eq!(c.find(17, a100, &mut out), Err(NoFit::TooLarge { need: 17 }));
        assert_eq!(c.free_for(a100), 16);
    }

    #[test]
    #[should_panic(expected = "GPU allocated twice")]
    fn double_allocation_is_refused() {
        let f = Facility::preset("tiny").unwrap();
        let mut c = Cluster::new(&f);
        c.allocate(&[(DomainId(0), 8)]);
        c.allocate(&[(DomainId(0), 1)]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// `find` answers from its memory of failed searches exactly what a fresh search
        /// answers, through allocations, releases, failures and repairs.
        #[test]
        fn remembered_failures_answer_like_a_search(ops in proptest::collection::vec((0u8..6, 1u32..80, 0u8..3), 1..200)) {
            let text = "name='mix'\n[[pool]]\ngpu='H100'\ndomain_gpus=8\ndomains_per_group=4\ngroups=3\n\
                        [[pool]]\ngpu='A100'\ndomain_gpus=4\ndomains_per_group=2\ngroups=2\n";
            let f = Facility::from_toml(text, "mix").unwrap();
            let types = [None, f.gpu_type_id("H100"), f.gpu_type_id("A100")];
            let mut c = Cluster::new(&f);
            let mut held: Vec<Parts> = Vec::new();
            let mut out = Parts::new();
            for (op, n, t) in ops {
                let ty = types[t as usize];
                match op {
                    0 | 1 => {
                        let mut fresh = c.clone();
                        fresh.failed_version = u64::MAX;
                        let mut fresh_out = Parts::new();
                        let want = fresh.find(n, ty, &mut fresh_out);
                        let got = c.find(n, ty, &mut out);
                        proptest::prop_assert_eq!(got, want);
                        if got.is_ok() {
                            proptest::prop_assert_eq!(&out, &fresh_out);
                            if op == 0 {
                                c.allocate(&out);
                                held.push(out.clone());
                            }
                        }
                    }
                    2 if !held.is_empty() => {
                        let p = held.swap_remove(n as usize % held.len());
                        c.release(&p);
                    }
                    3 => {
                        // a domain fails: the jobs on it stop first
                        let d = DomainId(n % f.domains.len() as u32);
                        let (on, off): (Vec<Parts>, Vec<Parts>) = held.drain(..).partition(|p| p.iter().any(|x| x.0 == d));
                        held = off;
                        for p in on {
                            c.release(&p);
                        }
                        c.set_down(d, true);
                    }
                    4 => c.set_down(DomainId(n % f.domains.len() as u32), false),
                    _ => {
                        // a run of queries of falling sizes at one state, as a pass asks them
                        for m in (1..=n).rev().step_by(3) {
                            let mut fresh = c.clone();
                            fresh.failed_version = u64::MAX;
                            let want = fresh.find(m, ty, &mut Parts::new());
                            proptest::prop_assert_eq!(c.find(m, ty, &mut out), want);
                        }
                    }
                }
            }
        }
    }
}
