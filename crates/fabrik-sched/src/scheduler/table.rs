//! Per-job state by id (`IdTable`; the brain's is `JobTable`). Ids are dense and given in
//! submission order. A body that keeps its own record of ended jobs retires them
//! (`Scheduler::retire`); the table then drops every retired entry older than its oldest live
//! one, so its memory follows the jobs alive — the queue, the running jobs and what ended since
//! the oldest of them arrived — not every job ever submitted (a year of the 100,096-GPU preset
//! submits 2.6 M). The twin keeps its per-run state of live jobs in one too.

use super::JobEntry;
use fabrik_model::JobId;
use std::collections::VecDeque;
use std::ops::{Index, IndexMut};

/// Entries by dense id, pushed in id order and retired in any order.
#[derive(Debug, Clone)]
pub struct IdTable<T> {
    /// Id of `entries[0]`: every job below it was retired.
    base: usize,
    /// `None`: retired, but a job older than it is still live. Boxed: a slot held only
    /// because an older job lives (one pending for weeks keeps every later slot) costs a
    /// pointer, not an entry.
    entries: VecDeque<Option<Box<T>>>,
}

pub(crate) type JobTable = IdTable<JobEntry>;

impl<T> Default for IdTable<T> {
    fn default() -> Self {
        IdTable { base: 0, entries: VecDeque::new() }
    }
}

impl<T> IdTable<T> {
    /// The id the next job gets.
    pub fn next_id(&self) -> JobId {
        JobId((self.base + self.entries.len()) as u32)
    }

    pub fn push(&mut self, e: T) -> JobId {
        let id = self.next_id();
        self.entries.push_back(Some(Box::new(e)));
        id
    }

    /// The job at index `idx`, unless it was retired or never submitted.
    pub fn get(&self, idx: usize) -> Option<&T> {
        idx.checked_sub(self.base).and_then(|k| self.entries.get(k)).and_then(|e| e.as_deref())
    }

    pub fn get_mut(&mut self, idx: usize) -> Option<&mut T> {
        idx.checked_sub(self.base).and_then(|k| self.entries.get_mut(k)).and_then(|e| e.as_deref_mut())
    }

    /// Takes a job out of the table; the front of the table shrinks past every retired entry.
    pub fn retire(&mut self, idx: usize) -> Option<T> {
        let e = idx.checked_sub(self.base).and_then(|k| self.entries.get_mut(k)).and_then(Option::take)?;
        while self.entries.front().is_some_and(Option::is_none) {
            self.entries.pop_front();
            self.base += 1;
        }
        Some(*e)
    }

    /// Id of the oldest entry held: every id below it was retired.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The live jobs in id order.
    pub fn iter(&self) -> impl Iterator<Item = (JobId, &T)> {
        let base = self.base;
        self.entries.iter().enumerate().filter_map(move |(k, e)| e.as_deref().map(|e| (JobId((base + k) as u32), e)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut().flatten().map(|e| &mut **e)
    }

    /// Entries held, retired ones between live ones included (what the table's memory follows).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.entries.len()
    }
}

impl<T> Index<usize> for IdTable<T> {
    type Output = T;
    fn index(&self, idx: usize) -> &T {
        match self.get(idx) {
            Some(e) => e,
            None => panic!("job {idx} was retired or never submitted"),
        }
    }
}

impl<T> IndexMut<usize> for IdTable<T> {
    fn index_mut(&mut self, idx: usize) -> &mut T {
        match self.get_mut(idx) {
            Some(e) => e,
            None => panic!("job {idx} was retired or never submitted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabrik_model::{AccountId, JobSpec, Secs, SimTime};

    fn entry(n: u32) -> JobEntry {
        JobEntry::new(JobSpec::new(format!("j{n}"), AccountId(0), 1, SimTime(u64::from(n)), Secs(60)), 0)
    }

    #[test]
    fn retiring_shrinks_the_front_past_every_retired_entry() {
        let mut t: JobTable = IdTable::default();
        for n in 0..5 {
            assert_eq!(t.push(entry(n)), JobId(n));
        }
        // retiring in the middle keeps the slot (job 0 is still live)
        assert_eq!(t.retire(2).map(|e| e.spec.name), Some("j2".to_string()));
        assert_eq!(t.held(), 5);
        assert!(t.get(2).is_none());
        assert!(t.retire(2).is_none(), "a job is retired once");
        t.retire(1);
        assert_eq!(t.held(), 5);
        // the oldest goes: 0, 1 and 2 leave the table
        t.retire(0);
        assert_eq!(t.held(), 2);
        assert_eq!(t[3].spec.name, "j3");
        assert_eq!(t.iter().map(|(id, _)| id.0).collect::<Vec<_>>(), vec![3, 4]);
        assert!(t.get(0).is_none() && t.get(5).is_none());
        // ids keep counting from where they were
        assert_eq!(t.push(entry(5)), JobId(5));
        t.retire(3);
        t.retire(4);
        t.retire(5);
        assert_eq!((t.held(), t.next_id()), (0, JobId(6)));
    }

    #[test]
    #[should_panic(expected = "job 1 was retired or never submitted")]
    fn a_retired_job_is_not_indexable() {
        let mut t: JobTable = IdTable::default();
        t.push(entry(0));
        t.push(entry(1));
        t.retire(1);
        let _ = &t[1];
    }
}
