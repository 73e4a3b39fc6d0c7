//! Device assignment: which GPU device numbers of its domains a started job gets. Numbers are
//! the domain's first device number + index, so on a one-node host they are the local GPU
//! indices, and domains of different sizes never share a number.

use fabrik_model::{DomainId, Facility};

pub(super) struct Devices {
    /// Per domain, per GPU: free.
    free: Vec<Vec<bool>>,
    /// First device number of each domain.
    base: Vec<u32>,
}

impl Devices {
    pub(super) fn new(facility: &Facility) -> Devices {
        let free: Vec<Vec<bool>> = (0..facility.domains.len())
            .map(|d| vec![true; facility.domain_gpus(DomainId(d as u32)) as usize])
            .collect();
        let base = free
            .iter()
            .scan(0u32, |next, d| {
                let base = *next;
                *next += d.len() as u32;
                Some(base)
            })
            .collect();
        Devices { free, base }
    }

    fn slot(&mut self, global: u32) -> Option<&mut bool> {
        let dom = self.base.partition_point(|&b| b <= global).saturating_sub(1);
        let i = (global - self.base.get(dom).copied().unwrap_or(0)) as usize;
        self.free.get_mut(dom).and_then(|v| v.get_mut(i))
    }

    /// Marks devices as in use (a re-adopted job's).
    pub(super) fn take(&mut self, devs: &[u32]) {
        for &d in devs {
            if let Some(x) = self.slot(d) {
                *x = false;
            }
        }
    }

    /// Device numbers for a placement: the lowest free GPUs of each domain.
    pub(super) fn assign(&mut self, parts: &[(DomainId, u32)]) -> Vec<u32> {
        let mut out = Vec::new();
        for &(d, n) in parts {
            let base = self.base[d.idx()];
            let mut left = n;
            for (i, free) in self.free[d.idx()].iter_mut().enumerate() {
                if left == 0 {
                    break;
                }
                if *free {
                    *free = false;
                    out.push(base + i as u32);
                    left -= 1;
                }
            }
        }
        out
    }

    pub(super) fn release(&mut self, devs: &[u32]) {
        for &d in devs {
            if let Some(x) = self.slot(d) {
                *x = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_across_domains_and_lowest_free_first() {
        let f = Facility::preset("tiny").expect("preset");
        let mut d = Devices::new(&f);
        let per = f.domain_gpus(DomainId(0));
        let a = d.assign(&[(DomainId(0), 2)]);
        assert_eq!(a, vec![0, 1]);
        let b = d.assign(&[(DomainId(1), 1), (DomainId(0), 1)]);
        assert_eq!(b, vec![per, 2]);
        d.release(&[1]);
        assert_eq!(d.assign(&[(DomainId(0), 1)]), vec![1]);
        d.take(&[3]);
        assert_eq!(d.assign(&[(DomainId(0), 1)]), vec![4]);
    }
}
