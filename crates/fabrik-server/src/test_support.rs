//! Helpers for this workspace's tests of the live control plane (not part of the API).
//!
//! Local jobs never run as the server's user unless it is an ordinary user in `--single-user`
//! mode, so tests need real Unix users when they run as root (as CI does): [`tenant_users`]
//! creates two (`fabrik-ta`, `fabrik-tb`) with `useradd` if they are missing. Where that cannot
//! be done the caller gets `None` and a printed notice — and under `CI=true` a failure, since a
//! skipped isolation test proves nothing.

use crate::executor::Isolation;
use fabrik_model::users::{RunAsSpec, UserMap};

pub const USERS: [&str; 2] = ["fabrik-ta", "fabrik-tb"];

fn exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).ok().flatten().is_some()
}

/// Prints why a test is skipped; fails it under `CI=true`.
pub fn skip(why: &str) {
    let msg = format!("SKIPPED: {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true: a skipped test is a failure)");
    }
    eprintln!("{msg}");
}

/// The two tenant users, when this process is root (created if needed); `None` otherwise.
pub fn tenant_users() -> Option<[&'static str; 2]> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    for u in USERS {
        if !exists(u) {
            let out = std::process::Command::new("useradd")
                .args(["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", u])
                .output();
            // another test binary may have created it meanwhile
            if !exists(u) {
                skip(&format!("cannot create Unix user {u}: {out:?}"));
                return None;
            }
        }
    }
    Some(USERS)
}

/// How a test server isolates jobs: as root, accounts under `accounts[0]` run as `fabrik-ta`
/// and under `accounts[1]` as `fabrik-tb`; as an ordinary user, single-user mode.
pub fn isolation(accounts: [&str; 2]) -> Isolation {
    match tenant_users() {
        Some(users) => Isolation::Mapped(user_map(&[(accounts[0], users[0]), (accounts[1], users[1])])),
        None => Isolation::SingleUser,
    }
}

/// A map of (account subtree, Unix user) pairs.
pub fn user_map(pairs: &[(&str, &str)]) -> UserMap {
    let specs: Vec<RunAsSpec> = pairs
        .iter()
        .map(|(a, u)| RunAsSpec { account: a.to_string(), user: u.to_string(), group: None, slurm_account: None })
        .collect();
    UserMap::from_specs(&specs, "test", |_| true).expect("valid test map")
}

/// The `[[run_as]]` lines of a facility file mapping `accounts[i]` to `USERS[i % 2]` (for
/// tests of `fabrik serve`); `None` when this process is not root.
pub fn run_as_toml(accounts: &[&str]) -> Option<String> {
    let users = tenant_users()?;
    Some(
        accounts
            .iter()
            .enumerate()
            .map(|(i, a)| format!("[[run_as]]\naccount = \"{a}\"\nuser = \"{}\"\n", users[i % 2]))
            .collect(),
    )
}
