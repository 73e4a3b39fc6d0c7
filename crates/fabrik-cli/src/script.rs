//! `fabrik submit script.sh`: the job's options from the script's own `#FABRIK` lines (fabrik's
//! flag names) and `#SBATCH` lines (sbatch's common options), read as sbatch reads them — at
//! the top of the script, up to the first line that is not a comment — and the script sent
//! inline to its interpreter, so it runs wherever the job lands.

use anyhow::{bail, Result};

/// What a script's directives ask for; flags on the command line win over them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Directives {
    pub gpus: Option<u32>,
    pub walltime: Option<String>,
    pub name: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub gpu_type: Option<String>,
    pub preemptible: bool,
    pub begin: Option<String>,
    pub deadline: Option<String>,
    pub dependency: Option<String>,
    pub array: Option<String>,
    pub simulated_runtime: Option<String>,
    /// sbatch options fabrik has no use for, ignored (and said so).
    pub ignored: Vec<String>,
}

/// sbatch options a GPU scheduler can ignore without changing what the job computes: output
/// files (fabrik keeps stdout and stderr), mail, CPUs and memory (a GPU's host share comes
/// with it), the partition (fabrik places jobs on its facility).
const IGNORED: &[&str] = &[
    "-p",
    "--partition",
    "-o",
    "--output",
    "-e",
    "--error",
    "--mail-type",
    "--mail-user",
    "--mem",
    "--mem-per-cpu",
    "--mem-per-gpu",
    "-c",
    "--cpus-per-task",
    "--cpus-per-gpu",
    "-n",
    "--ntasks",
    "--ntasks-per-node",
    "--exclusive",
    "--export",
    "--requeue",
    "--no-requeue",
    "--open-mode",
    "--signal",
];

/// Options that take no value.
const FLAGS: &[&str] = &["--exclusive", "--requeue", "--no-requeue", "--preemptible"];

/// GPUs in a `gpu:N` / `gpu:TYPE:N` / `TYPE:N` / `N` value; with its type if named.
fn gpus_of(v: &str, what: &str) -> Result<(u32, Option<String>)> {
    let v = v.strip_prefix("gpu:").unwrap_or(v);
    let (ty, n) = match v.rsplit_once(':') {
        Some((t, n)) => (Some(t.to_string()), n),
        None => (None, v),
    };
    match n.parse::<u32>() {
        Ok(n) if n > 0 => Ok((n, ty)),
        _ => bail!("{what} '{v}' is not a positive number of GPUs"),
    }
}

/// Reads the directives of a script's text; `origin` names it in errors.
pub fn directives(text: &str, origin: &str) -> Result<Directives> {
    let mut d = Directives::default();
    let (mut nodes, mut per_node, mut total): (Option<u32>, Option<u32>, Option<u32>) = (None, None, None);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if i == 0 && line.starts_with("#!") {
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            break; // sbatch stops at the first command
        }
        let (sbatch, rest) = if let Some(r) = line.strip_prefix("#SBATCH") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("#FABRIK") {
            (false, r)
        } else {
            continue;
        };
        let at = |m: String| anyhow::anyhow!("{origin} line {}: {m}", i + 1);
        let words: Vec<&str> = rest.split_whitespace().collect();
        let mut k = 0;
        while k < words.len() {
            let w = words[k];
            let (opt, inline) = match w.split_once('=') {
                Some((o, v)) if o.starts_with('-') => (o, Some(v.to_string())),
                _ => (w, None),
            };
            let value = if FLAGS.contains(&opt) {
                None
            } else if let Some(v) = inline {
                Some(v)
            } else {
                k += 1;
                Some(words.get(k).map(|s| s.to_string()).ok_or_else(|| at(format!("{opt} needs a value")))?)
            };
            k += 1;
            let v = || value.clone().unwrap_or_default();
            let tag = if sbatch { "#SBATCH" } else { "#FABRIK" };
            match (sbatch, opt) {
                (_, "-G" | "--gpus") => {
                    let (n, ty) = gpus_of(&v(), opt).map_err(|e| at(e.to_string()))?;
                    total = Some(n);
                    d.gpu_type = ty.or(d.gpu_type.take());
                }
                (true, "--gres") => {
                    let (n, ty) = gpus_of(&v(), opt).map_err(|e| at(e.to_string()))?;
                    per_node = Some(n);
                    d.gpu_type = ty.or(d.gpu_type.take());
                }
                (true, "--gpus-per-node") => {
                    let (n, ty) = gpus_of(&v(), opt).map_err(|e| at(e.to_string()))?;
                    per_node = Some(n);
                    d.gpu_type = ty.or(d.gpu_type.take());
                }
                (true, "-N" | "--nodes") => {
                    let n: u32 = v()
                        .split('-')
                        .next()
                        .unwrap_or("")
                        .parse()
                        .map_err(|_| at(format!("{opt} '{}' is not a node count", v())))?;
                    nodes = Some(n);
                }
                (true, "-t" | "--time") | (false, "-t" | "--walltime") => d.walltime = value,
                (true, "-J" | "--job-name") | (false, "-J" | "--name") => d.name = value,
                (_, "-A" | "--account") => d.account = value,
                (_, "-q" | "--qos") => d.qos = value,
                (false, "--gpu-type") => d.gpu_type = value,
                (false, "--preemptible") => d.preemptible = true,
                (_, "-b" | "--begin") => d.begin = value,
                (_, "--deadline") => d.deadline = value,
                (_, "-d" | "--dependency") => d.dependency = value,
                (_, "-a" | "--array") => d.array = value,
                (false, "--simulated-runtime") => d.simulated_runtime = value,
                (true, o) if IGNORED.contains(&o) => {
                    d.ignored.push(format!("{o}{}", value.map(|v| format!("={v}")).unwrap_or_default()))
                }
                (_, o) => bail!(at(format!("{tag} {o}: not an option fabrik reads (see fabrik submit --help)"))),
            }
        }
    }
    d.gpus = match (total, nodes, per_node) {
        (Some(t), _, _) => Some(t),
        (None, n, Some(p)) => Some(n.unwrap_or(1).saturating_mul(p)),
        (None, Some(_), None) => bail!("{origin}: --nodes without --gres=gpu:N or --gpus-per-node: how many GPUs?"),
        (None, None, None) => None,
    };
    Ok(d)
}

/// The most script fabrik sends inline (the API takes bodies up to 64 KiB).
pub const MAX_SCRIPT: usize = 60 << 10;

/// The job's command for a script: its interpreter (from `#!`, `sh` without one) running the
/// text inline, with the script's name as `$0` and `args` after it.
pub fn command(text: &str, name: &str, args: &[String]) -> Result<Vec<String>> {
    if text.len() > MAX_SCRIPT {
        bail!(
            "{name}: {} KiB is more than fabrik sends inline ({} KiB); submit a command that runs it",
            text.len() >> 10,
            MAX_SCRIPT >> 10
        );
    }
    let interp = match text.lines().next().and_then(|l| l.strip_prefix("#!")) {
        None => "/bin/sh".to_string(),
        Some(l) => {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some(e), Some(prog)) if e.ends_with("/env") => prog.to_string(),
                (Some(p), _) => p.to_string(),
                (None, _) => "/bin/sh".to_string(),
            }
        }
    };
    let base = interp.rsplit('/').next().unwrap_or(&interp);
    let known = ["sh", "bash", "dash", "zsh", "ksh", "python", "python3"];
    if !known.contains(&base) {
        bail!(
            "{name}: interpreter '{interp}' is not one fabrik runs a script with ({}); submit a command instead",
            known.join(", ")
        );
    }
    let mut cmd = vec![interp.clone(), "-c".into(), text.to_string(), name.to_string()];
    cmd.extend(args.iter().cloned());
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbatch_and_fabrik_lines_are_read_up_to_the_first_command() {
        let text = "#!/bin/bash\n\
                    #SBATCH --job-name=pretrain\n\
                    #SBATCH -N 2 --gres=gpu:h100:4\n\
                    #SBATCH --time=1-12:00:00 -A research/open-llm/pretrain\n\
                    #SBATCH --output=%j.out --mem=200G -p gpu\n\
                    # a comment\n\
                    #FABRIK --preemptible --deadline now+3d\n\
                    #SBATCH --dependency=afterok:12 --array=0-3%2\n\
                    \n\
                    srun python train.py\n\
                    #SBATCH --qos=high\n";
        let d = directives(text, "train.sh").unwrap();
        // 2 nodes × 4 GPUs of type h100; the --qos after the first command is not read
        assert_eq!((d.gpus, d.gpu_type.as_deref()), (Some(8), Some("h100")));
        assert_eq!(d.name.as_deref(), Some("pretrain"));
        assert_eq!(d.walltime.as_deref(), Some("1-12:00:00"));
        assert_eq!(d.account.as_deref(), Some("research/open-llm/pretrain"));
        assert!(d.preemptible);
        assert_eq!(
            (d.deadline.as_deref(), d.dependency.as_deref(), d.array.as_deref()),
            (Some("now+3d"), Some("afterok:12"), Some("0-3%2"))
        );
        assert_eq!(d.qos, None);
        assert_eq!(d.ignored, ["--output=%j.out", "--mem=200G", "-p=gpu"]);
        // -G wins over nodes × per node; --gpus=type:N names the type
        let d = directives("#SBATCH -N 4 --gpus-per-node=8 --gpus=a100:16\n", "x").unwrap();
        assert_eq!((d.gpus, d.gpu_type.as_deref()), (Some(16), Some("a100")));
        for (bad, why) in [
            ("#SBATCH --licenses=matlab\n", "x line 1: #SBATCH --licenses: not an option fabrik reads"),
            ("#SBATCH --time\n", "x line 1: --time needs a value"),
            ("#SBATCH --gres=gpu:lots\n", "x line 1: --gres 'lots' is not a positive number of GPUs"),
            ("#SBATCH -N 2\n", "x: --nodes without --gres=gpu:N"),
            ("#FABRIK --gres=gpu:2\n", "#FABRIK --gres: not an option"),
        ] {
            let e = directives(bad, "x").unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn scripts_run_inline_under_their_interpreter() {
        let c = command("#!/bin/bash\necho hi\n", "job.sh", &["a".into()]).unwrap();
        assert_eq!(c, ["/bin/bash", "-c", "#!/bin/bash\necho hi\n", "job.sh", "a"]);
        assert_eq!(command("#!/usr/bin/env python3\nprint(1)\n", "p.py", &[]).unwrap()[0], "python3");
        assert_eq!(command("echo plain\n", "s", &[]).unwrap()[0], "/bin/sh");
        assert!(command("#!/usr/bin/perl\n", "x.pl", &[])
            .unwrap_err()
            .to_string()
            .contains("interpreter '/usr/bin/perl'"));
        assert!(command(&"#".repeat(70_000), "big.sh", &[])
            .unwrap_err()
            .to_string()
            .contains("more than fabrik sends inline"));
    }
}
