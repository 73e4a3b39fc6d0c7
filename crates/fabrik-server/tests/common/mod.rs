//! A control plane on a loopback port for the integration tests: four tokens of the tiny
//! preset's tree, the local executor (as root: research's jobs as fabrik-ta, the SMEs' and the
//! public sector's as fabrik-tb), and small helpers.
#![allow(dead_code)] // each test binary uses a part

use fabrik_server::engine::EngineConfig;
use fabrik_server::store::Role;
use fabrik_server::{test_support, ExecutorKind, ServeConfig};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

pub struct Srv {
    pub cfg: ServeConfig,
    pub base: String,
    pub admin: String,
    pub alice: String, // user of research/open-llm/eval
    pub bob: String,   // user of sme/startup-a/llm
    pub carol: String, // manager of research/open-llm
    pub http: Client,
    pub running: Option<fabrik_server::Running>,
    pub dir: std::path::PathBuf,
}

/// The tiny preset's tenants; as root, research's jobs run as fabrik-ta, the SMEs' and the
/// public sector's as fabrik-tb (industry maps to no user).
pub fn tenant_facility() -> fabrik_model::Facility {
    let mut f = fabrik_model::Facility::preset("tiny").unwrap();
    if let Some([ta, tb]) = test_support::tenant_users() {
        f.run_as = test_support::user_map(&[("research", ta), ("sme", tb), ("public", tb)]);
    }
    f
}

pub fn engine() -> EngineConfig {
    EngineConfig { tick: Duration::from_millis(50), kill_grace_s: 1, ..EngineConfig::default() }
}

pub async fn start(name: &str, gpus: u32) -> Srv {
    start_with(name, gpus, engine()).await
}

pub async fn start_with(name: &str, gpus: u32, engine: EngineConfig) -> Srv {
    start_cfg(name, |c| {
        c.virtual_gpus = gpus;
        c.engine = engine;
    })
    .await
}

/// A fresh data directory, four tokens, and a server configured by `edit`.
pub async fn start_cfg(name: &str, edit: impl FnOnce(&mut ServeConfig)) -> Srv {
    let dir = std::env::temp_dir().join(format!("fabrik-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(fabrik_server::default_spool(&dir));
    let store = fabrik_server::open_store(&dir).unwrap();
    let f = fabrik_model::Facility::preset("tiny").unwrap();
    for (_, a) in f.tenants.iter().skip(1) {
        store.add_account(&a.path, a.shares).unwrap();
    }
    let admin = store.create_token("root", None, Role::Admin, 0).unwrap();
    let alice = store.create_token("alice", Some("research/open-llm/eval"), Role::User, 0).unwrap();
    let bob = store.create_token("bob", Some("sme/startup-a/llm"), Role::User, 0).unwrap();
    let carol = store.create_token("carol", Some("research/open-llm"), Role::Manager, 0).unwrap();
    drop(store);
    let mut cfg = ServeConfig::new(dir.clone(), ExecutorKind::Local, Some(tenant_facility()));
    cfg.virtual_gpus = 4;
    cfg.single_user = test_support::tenant_users().is_none();
    cfg.engine = engine();
    edit(&mut cfg);
    let running = fabrik_server::start(cfg.clone()).await.unwrap();
    Srv {
        cfg,
        base: format!("http://{}", running.addr),
        admin,
        alice,
        bob,
        carol,
        http: Client::new(),
        running: Some(running),
        dir,
    }
}

impl Srv {
    pub async fn req(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let mut r = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url),
        }
        .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn submit(&self, token: &str, body: Value) -> i64 {
        let (s, v) = self.req("POST", "/v1/jobs", token, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    pub async fn wait_state(&self, id: i64, token: &str, want: &str) -> Value {
        let t = Instant::now();
        loop {
            let (_, v) = self.req("GET", &format!("/v1/jobs/{id}"), token, None).await;
            if v["state"] == want {
                return v;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "job {id} stuck in {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (even one whose engine died) and starts another on the same data
    /// directory with the same tokens, configured by `edit`.
    pub async fn restart(mut self, edit: impl FnOnce(&mut ServeConfig)) -> Srv {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        let mut cfg = self.cfg.clone();
        edit(&mut cfg);
        let running = fabrik_server::start(cfg.clone()).await.unwrap();
        Srv { cfg, base: format!("http://{}", running.addr), running: Some(running), ..self }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(fabrik_server::default_spool(&self.dir));
    }
}
