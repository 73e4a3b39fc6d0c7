//! The durable store: one SQLite database (WAL, synchronous=FULL) in the data directory.
//! Every accepted submission is committed before the API answers; submissions that arrive
//! together are committed in one transaction (group commit).

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

pub type Result<T> = std::result::Result<T, rusqlite::Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Manager,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::User => "user",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "manager" => Some(Role::Manager),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    /// The account the token is bound to; `None` for admins (all accounts).
    pub account: Option<String>,
}

impl Identity {
    /// Whether this identity may see and act on jobs of `account`: admins everywhere, managers
    /// in their subtree, users in their own project.
    pub fn covers(&self, account: &str) -> bool {
        match (&self.role, &self.account) {
            (Role::Admin, _) => true,
            (Role::Manager, Some(a)) => account == a || account.starts_with(&format!("{a}/")),
            (Role::User, Some(a)) => account == a,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    /// Kept out of scheduling until released (Slurm's `scontrol hold`).
    Held,
    /// Committed as starting before the process is spawned, so a crash cannot start it twice.
    Starting,
    Running,
    Completed,
    Failed,
    Cancelled,
    Timeout,
}

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Pending,
        JobStatus::Held,
        JobStatus::Starting,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Timeout,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Held => "held",
            JobStatus::Starting => "starting",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Timeout => "timeout",
        }
    }
    /// A state by name, case-insensitively (`PENDING`, `Running` …).
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|x| x.as_str().eq_ignore_ascii_case(s.trim()))
    }
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled | JobStatus::Timeout)
    }
}

/// GPUs a running job holds: per domain counts (the scheduler's view) and device indices on
/// the host (the executor's view, for CUDA_VISIBLE_DEVICES).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Allocation {
    pub parts: Vec<(u32, u32)>,
    pub devices: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: i64,
    pub name: String,
    pub account: String,
    pub gpus: u32,
    pub gpu_type: Option<String>,
    pub walltime_s: u64,
    pub qos: String,
    pub preemptible: bool,
    pub checkpoint_interval_s: Option<u64>,
    pub earliest_start: Option<u64>,
    pub deadline: Option<u64>,
    pub command: Vec<String>,
    pub simulated_runtime_s: Option<u64>,
    pub submitter: String,
    pub state: JobStatus,
    pub submit_time: u64,
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub pid: Option<u32>,
    pub allocation: Option<Allocation>,
    pub reason: Option<String>,
    /// sbatch's `--dependency`, as normalised at submission (`afterok:3:4,singleton`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// A job array's task: the array's id (its first task's job id), the task index, and the
    /// throttle (at most this many tasks at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array_job_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array_task_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array_limit: Option<u32>,
}

pub fn hash_token(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct Store {
    conn: Connection,
    /// Test hook: this many coming writes fail as an I/O error would (see `use_fault_counter`).
    fail_writes: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

/// A token as listed to admins and managers: never its secret, which is stored only hashed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub account: Option<String>,
    pub created: u64,
    /// Unix seconds after which the token is refused.
    pub expires: Option<u64>,
    pub revoked: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (seq INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, shares REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, hash TEXT UNIQUE NOT NULL,
    account TEXT, role TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, account TEXT NOT NULL, gpus INTEGER NOT NULL,
    gpu_type TEXT, walltime INTEGER NOT NULL, qos TEXT NOT NULL, preemptible INTEGER NOT NULL,
    checkpoint_interval INTEGER, earliest_start INTEGER, deadline INTEGER, command TEXT NOT NULL,
    sim_runtime INTEGER, submitter TEXT NOT NULL, state TEXT NOT NULL, submit_time INTEGER NOT NULL,
    start_time INTEGER, end_time INTEGER, exit_code INTEGER, signal INTEGER, pid INTEGER,
    allocation TEXT, reason TEXT, dependency TEXT, array_job INTEGER, array_task INTEGER, array_limit INTEGER);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
";

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // Stores from before token expiry and revocation gain the columns.
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('tokens')")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_>>()?;
        if !cols.iter().any(|c| c == "expires") {
            conn.execute_batch("ALTER TABLE tokens ADD COLUMN expires INTEGER")?;
        }
        if !cols.iter().any(|c| c == "revoked") {
            conn.execute_batch("ALTER TABLE tokens ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0")?;
        }
        // and stores from before job dependencies, the jobs' dependency column
        let job_cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('jobs')")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_>>()?;
        for (col, ty) in
            [("dependency", "TEXT"), ("array_job", "INTEGER"), ("array_task", "INTEGER"), ("array_limit", "INTEGER")]
        {
            if !job_cols.iter().any(|c| c == col) {
                conn.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {col} {ty}"))?;
            }
        }
        Ok(Store { conn, fail_writes: Default::default() })
    }

    /// Test hook for crash-safety tests: while the counter is above zero, each job or token
    /// write takes one off it and fails as a full disk or an I/O error would.
    #[doc(hidden)]
    pub fn use_fault_counter(&mut self, c: std::sync::Arc<std::sync::atomic::AtomicU32>) {
        self.fail_writes = c;
    }

    fn injected(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        match self.fail_writes.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)) {
            Err(_) => Ok(()),
            Ok(_) => Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("injected write failure".into()),
            )),
        }
    }

    /// The store's epoch: Unix seconds of its first use, set once. Live, advance reservations'
    /// windows are offsets from it.
    pub fn epoch(&self, now: u64) -> Result<u64> {
        self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('epoch', ?1)", params![now.to_string()])?;
        let v: String = self.conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0))?;
        Ok(v.parse().unwrap_or(now))
    }

    pub fn accounts(&self) -> Result<Vec<(String, f64)>> {
        let mut st = self.conn.prepare("SELECT path, shares FROM accounts ORDER BY seq")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    pub fn add_account(&self, path: &str, shares: f64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO accounts(path, shares) VALUES (?1, ?2) ON CONFLICT(path) DO UPDATE SET shares = excluded.shares",
            params![path, shares],
        )?;
        Ok(())
    }

    pub fn create_token(&self, name: &str, account: Option<&str>, role: Role, now: u64) -> Result<String> {
        self.create_token_expiring(name, account, role, now, None)
    }

    pub fn create_token_expiring(
        &self,
        name: &str,
        account: Option<&str>,
        role: Role,
        now: u64,
        expires: Option<u64>,
    ) -> Result<String> {
        let mut bytes = [0u8; 24];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes[..]);
        let token = format!("fbk_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        self.conn.execute(
            "INSERT INTO tokens(name, hash, account, role, created, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![name, hash_token(&token), account, role.as_str(), sql_u64(now), expires.map(sql_u64)],
        )?;
        Ok(token)
    }

    /// The identity of a token that is neither revoked nor expired at `now`. Read on every
    /// request (an indexed lookup), so a revocation takes effect at once, whoever made it.
    pub fn identity(&self, token_hash: &str, now: u64) -> Result<Option<Identity>> {
        self.conn
            .prepare_cached(
                "SELECT name, role, account FROM tokens WHERE hash = ?1 AND revoked = 0
                 AND (expires IS NULL OR expires > ?2)",
            )?
            .query_row(params![token_hash, sql_u64(now)], |r| {
                let role: String = r.get(1)?;
                Ok(Identity { name: r.get(0)?, role: Role::parse(&role).unwrap_or(Role::User), account: r.get(2)? })
            })
            .optional()
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let mut st =
            self.conn.prepare("SELECT id, name, role, account, created, expires, revoked FROM tokens ORDER BY id")?;
        let rows = st.query_map([], |r| {
            let role: String = r.get(2)?;
            Ok(TokenInfo {
                id: r.get(0)?,
                name: r.get(1)?,
                role: Role::parse(&role).unwrap_or(Role::User),
                account: r.get(3)?,
                created: r.get::<_, i64>(4)?.max(0) as u64,
                expires: r.get::<_, Option<i64>>(5)?.map(|x| x.max(0) as u64),
                revoked: r.get(6)?,
            })
        })?;
        rows.collect()
    }

    /// Revokes a token by id; false when there is no such token.
    pub fn revoke_token(&self, id: i64) -> Result<bool> {
        self.injected()?;
        Ok(self.conn.execute("UPDATE tokens SET revoked = 1 WHERE id = ?1", params![id])? > 0)
    }

    pub fn has_admin(&self) -> Result<bool> {
        self.conn
            .query_row("SELECT COUNT(*) FROM tokens WHERE role = 'admin' AND revoked = 0", [], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
    }

    /// Inserts jobs in one transaction; returns their ids. Tasks of an array arrive with the
    /// same negative `array_job_id` (a group number) and leave with their first task's id.
    pub fn insert_jobs(&mut self, jobs: &[JobRecord]) -> Result<Vec<i64>> {
        self.injected()?;
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(jobs.len());
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO jobs(name, account, gpus, gpu_type, walltime, qos, preemptible, checkpoint_interval,
                 earliest_start, deadline, command, sim_runtime, submitter, state, submit_time, dependency,
                 array_job, array_task, array_limit)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?;
            // an array's tasks are marked with the same negative group number; the first task
            // inserted gives the array its id
            let mut first: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
            for j in jobs {
                let array_job = match j.array_job_id {
                    Some(g) if g < 0 => first.get(&g).copied(),
                    other => other,
                };
                st.execute(params![
                    j.name,
                    j.account,
                    j.gpus,
                    j.gpu_type,
                    sql_u64(j.walltime_s),
                    j.qos,
                    j.preemptible,
                    j.checkpoint_interval_s.map(sql_u64),
                    j.earliest_start.map(sql_u64),
                    j.deadline.map(sql_u64),
                    serde_json::to_string(&j.command).expect("strings serialise"),
                    j.simulated_runtime_s.map(sql_u64),
                    j.submitter,
                    j.state.as_str(),
                    sql_u64(j.submit_time),
                    j.dependency,
                    array_job,
                    j.array_task_id,
                    j.array_limit,
                ])?;
                let id = tx.last_insert_rowid();
                if let Some(g) = j.array_job_id.filter(|&g| g < 0 && !first.contains_key(&g)) {
                    first.insert(g, id);
                    tx.execute("UPDATE jobs SET array_job = ?1 WHERE id = ?1", params![id])?;
                }
                ids.push(id);
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Writes the changing fields of these jobs in one transaction.
    pub fn update_jobs<'a>(&mut self, jobs: impl IntoIterator<Item = &'a JobRecord>) -> Result<()> {
        self.injected()?;
        let tx = self.conn.transaction()?;
        update_in(&tx, jobs)?;
        tx.commit()
    }

    pub fn load_jobs(&self) -> Result<Vec<JobRecord>> {
        let mut st = self.conn.prepare(
            "SELECT id, name, account, gpus, gpu_type, walltime, qos, preemptible, checkpoint_interval, earliest_start,
             deadline, command, sim_runtime, submitter, state, submit_time, start_time, end_time, exit_code, signal,
             pid, allocation, reason, dependency, array_job, array_task, array_limit FROM jobs ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            let command: String = r.get(11)?;
            let state: String = r.get(14)?;
            let alloc: Option<String> = r.get(21)?;
            let u = |i: usize| -> rusqlite::Result<Option<u64>> {
                Ok(r.get::<_, Option<i64>>(i)?.map(|x| x.max(0) as u64))
            };
            Ok(JobRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                account: r.get(2)?,
                gpus: r.get(3)?,
                gpu_type: r.get(4)?,
                walltime_s: r.get::<_, i64>(5)?.max(0) as u64,
                qos: r.get(6)?,
                preemptible: r.get(7)?,
                checkpoint_interval_s: u(8)?,
                earliest_start: u(9)?,
                deadline: u(10)?,
                command: serde_json::from_str(&command).unwrap_or_default(),
                simulated_runtime_s: u(12)?,
                submitter: r.get(13)?,
                state: JobStatus::parse(&state).unwrap_or(JobStatus::Failed),
                submit_time: r.get::<_, i64>(15)?.max(0) as u64,
                start_time: u(16)?,
                end_time: u(17)?,
                exit_code: r.get(18)?,
                signal: r.get(19)?,
                pid: r.get(20)?,
                allocation: alloc.and_then(|a| serde_json::from_str(&a).ok()),
                reason: r.get(22)?,
                dependency: r.get(23)?,
                array_job_id: r.get(24)?,
                array_task_id: r.get(25)?,
                array_limit: r.get(26)?,
            })
        })?;
        rows.collect()
    }
}

/// SQLite integers are i64; values beyond are refused at the API, and saturate here rather
/// than wrap negative.
fn sql_u64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn update_in<'a>(tx: &Transaction<'_>, jobs: impl IntoIterator<Item = &'a JobRecord>) -> Result<()> {
    let mut st = tx.prepare_cached(
        "UPDATE jobs SET state = ?2, start_time = ?3, end_time = ?4, exit_code = ?5, signal = ?6, pid = ?7,
         allocation = ?8, reason = ?9 WHERE id = ?1",
    )?;
    for j in jobs {
        st.execute(params![
            j.id,
            j.state.as_str(),
            j.start_time.map(sql_u64),
            j.end_time.map(sql_u64),
            j.exit_code,
            j.signal,
            j.pid,
            j.allocation.as_ref().map(|a| serde_json::to_string(a).expect("allocation serialises")),
            j.reason,
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_cover_their_subtree_only() {
        let m = Identity { name: "m".into(), role: Role::Manager, account: Some("sme/startup-a".into()) };
        assert!(m.covers("sme/startup-a/llm"));
        assert!(!m.covers("sme/startup-ab/llm"));
        let u = Identity { name: "u".into(), role: Role::User, account: Some("sme/startup-a/llm".into()) };
        assert!(u.covers("sme/startup-a/llm") && !u.covers("sme/startup-a/other"));
        assert!(Identity { name: "a".into(), role: Role::Admin, account: None }.covers("x"));
    }

    #[test]
    fn tokens_are_stored_hashed_and_jobs_round_trip() {
        let dir = std::env::temp_dir().join(format!("fabrik-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Store::open(&dir.join("t.db")).unwrap();
        let t = s.create_token("root", None, Role::Admin, 1).unwrap();
        assert!(s.has_admin().unwrap());
        let raw: String = s.conn.query_row("SELECT hash FROM tokens", [], |r| r.get(0)).unwrap();
        assert_ne!(raw, t);
        assert_eq!(raw, hash_token(&t));
        assert_eq!(s.identity(&hash_token(&t), 2).unwrap().unwrap().role, Role::Admin);
        assert!(s.identity(&hash_token("fbk_wrong"), 2).unwrap().is_none());
        // expiry and revocation
        let short = s.create_token_expiring("short", Some("a/b/c"), Role::User, 1, Some(100)).unwrap();
        assert!(s.identity(&hash_token(&short), 99).unwrap().is_some());
        assert!(s.identity(&hash_token(&short), 100).unwrap().is_none());
        let listed = s.tokens().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[1].name.as_str(), listed[1].expires, listed[1].revoked), ("short", Some(100), false));
        assert!(s.revoke_token(listed[0].id).unwrap());
        assert!(!s.revoke_token(999).unwrap());
        assert!(s.identity(&hash_token(&t), 2).unwrap().is_none());
        assert!(s.tokens().unwrap()[0].revoked);
        let mut j = JobRecord {
            id: 0,
            name: "j".into(),
            account: "a/b/c".into(),
            gpus: 2,
            gpu_type: None,
            walltime_s: 60,
            qos: "normal".into(),
            preemptible: false,
            checkpoint_interval_s: None,
            earliest_start: None,
            deadline: Some(99),
            command: vec!["echo".into(), "hi there".into()],
            simulated_runtime_s: None,
            submitter: "root".into(),
            state: JobStatus::Pending,
            submit_time: 5,
            start_time: None,
            end_time: None,
            exit_code: None,
            signal: None,
            pid: None,
            allocation: None,
            reason: None,
            dependency: Some("afterok:1".into()),
            array_job_id: None,
            array_task_id: None,
            array_limit: None,
        };
        let ids = s.insert_jobs(&[j.clone(), j.clone()]).unwrap();
        assert_eq!(ids.len(), 2);
        j.id = ids[1];
        j.state = JobStatus::Running;
        j.allocation = Some(Allocation { parts: vec![(0, 2)], devices: vec![3, 4] });
        s.update_jobs([&j]).unwrap();
        let back = s.load_jobs().unwrap();
        assert_eq!(back[1], j);
        assert_eq!(back[0].state, JobStatus::Pending);
        std::fs::remove_dir_all(&dir).ok();
    }
}
