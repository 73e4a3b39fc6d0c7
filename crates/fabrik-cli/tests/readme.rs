//! The README's examples run as written: every `fabrik …` line of its ```sh blocks that is a
//! complete command of the twin, the planner or the facility tools (no placeholders such as
//! `[--flag]`, `NAME|FILE` or `…`) runs with the built binary and must succeed. Commands that
//! need a running server, a Slurm cluster's files or the operator's own data are run by the
//! tests of those parts instead (listed in `NEEDS`). The facility example (the first ```toml
//! block) is saved as `lab.toml`, as the README tells its reader to; `../shared/` paths are
//! read from the repository's sibling `shared` directory.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fabrik");

/// Subcommands (first word after `fabrik`) that need a live server, and words that mark a
/// command needing the operator's own cluster or data.
const SERVER: &[&str] = &[
    "serve",
    "admin",
    "submit",
    "queue",
    "why",
    "logs",
    "show",
    "cancel",
    "usage",
    "snapshot",
    "whatif",
    "nodes",
    "drain",
    "resume",
    "hold",
    "release",
    "requeue",
    "telemetry",
];
const NEEDS: &[&str] = &["/etc/slurm", "mycluster.toml", "jobs.sacct", "LANL-CM5", "state.json", "SNAPSHOT", "http://"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The README's `fabrik` commands, continuation lines joined, comments dropped.
fn commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut current = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = line.split(" # ").next().unwrap_or("").trim_end();
        let code = if code.trim_start().starts_with('#') { "" } else { code };
        if !current.is_empty() {
            current.push(' ');
            current.push_str(code.trim().trim_end_matches('\\').trim());
        } else if code.trim_start().starts_with("fabrik ") {
            current = code.trim().trim_end_matches('\\').trim().to_string();
        }
        if !current.is_empty() && !code.ends_with('\\') {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

fn runnable(cmd: &str) -> bool {
    let sub = cmd.split_whitespace().nth(1).unwrap_or("");
    let placeholder = ["[", "…", "|", "NAME", "FILE", "PATH", "ID", "ARGS"].iter().any(|p| cmd.contains(p));
    !SERVER.contains(&sub) && !placeholder && !NEEDS.iter().any(|n| cmd.contains(n)) && !cmd.contains('&')
}

/// Splits a command line into words (the README's commands quote nothing).
fn words(cmd: &str) -> Vec<String> {
    cmd.split_whitespace().skip(1).map(String::from).collect()
}

#[test]
fn the_readme_commands_run_as_written() {
    let root = repo();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let shared = root.join("../shared");
    let work = std::env::temp_dir().join(format!("fabrik-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    // the facility example, saved as the README says
    let toml = readme.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a ```toml block");
    std::fs::write(work.join("lab.toml"), toml).unwrap();
    let all = commands(&readme);
    let run: Vec<&String> = all.iter().filter(|c| runnable(c)).collect();
    assert!(run.len() >= 15, "found only {} runnable README commands of {}: {all:#?}", run.len(), all.len());
    let mut skipped = Vec::new();
    for cmd in run {
        let cmd = cmd.replace("../shared/", &format!("{}/", shared.display()));
        if cmd.contains(&shared.display().to_string()) && !shared.exists() {
            skipped.push(cmd);
            continue;
        }
        let o = Command::new(BIN).args(words(&cmd)).current_dir(&work).output().unwrap();
        assert!(o.status.success(), "README command failed: {cmd}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
        eprintln!("ok: {cmd}");
    }
    if !skipped.is_empty() {
        fabrik_server::test_support::skip(&format!("the traces in ../shared are missing for: {skipped:?}"));
    }
}

#[test]
fn the_readme_extraction_finds_continued_commands_and_leaves_placeholders() {
    let text = "```sh\nfabrik simulate --facility a \\\n    --days 2   # two days\n# a comment\nfabrik plan zones\nfabrik simulate [--days N]\n```\n```text\nfabrik plan power\n```\n";
    let c = commands(text);
    assert_eq!(c, ["fabrik simulate --facility a --days 2", "fabrik plan zones", "fabrik simulate [--days N]"]);
    assert_eq!(c.iter().filter(|c| runnable(c)).count(), 2);
}
