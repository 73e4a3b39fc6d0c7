#!/usr/bin/env python3
"""Twin against real Slurm: one seeded workload run through Slurm and through the twin, compared
job by job.

1. Through real Slurm's own scheduler (fabrik not involved): sleep jobs of 1-32 GPUs (whole
   nodes above one node's GPUs), time limits of 1-10 minutes, runtimes well below them, in two
   accounts, submitted over a minute so that a queue builds up.
2. Through `fabrik simulate --policy P` for each P of `--policies` (default slurm,fifo-backfill)
   on the facility `fabrik facility import` makes of the cluster's own slurm.conf, topology.conf
   and gres.conf (so the slurm policy gets the cluster's SchedulerParameters and priority
   settings), with the same jobs read back from `sacct` (`--workload sacct:`).

Reports per policy the per-job start-time differences (relative to the first submission): mean
absolute error, the share of jobs within 5 s and 10 s, Spearman's rank correlation of start
order, and the worst jobs.

Needs the cluster of `.ci/slurm.sh start` (root; FABRIK_SLURM_NODES=4 FABRIK_SLURM_GPUS=8 for the
issue's 4 x 8 GPUs, FABRIK_SLURM_PRIORITY=multifactor for priority/multifactor) and a built
fabrik (`--bin`). Bounded: at most 200 jobs, at most 30 minutes of waiting. Loopback only.

Usage: tools/twin-vs-slurm.py [--bin target/release/fabrik] [--jobs 40] [--seed 7]
                              [--policies slurm,fifo-backfill] [--out report.json]
"""

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time


def sh(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):  # average ranks for ties
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else 1.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/fabrik")
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--policies", default="slurm,fifo-backfill")
    ap.add_argument("--out", default=None, help="also write the report here")
    ap.add_argument("--bf-phase", type=int, default=None, metavar="S",
                    help="the backfill cycles' phase on the bf_interval grid (default: measured from "
                         "slurmctld's log during the run, else 0)")
    ap.add_argument("--replay", default=None, metavar="DIR",
                    help="compare again from an earlier run's files (no Slurm needed)")
    args = ap.parse_args()
    n = max(2, min(args.jobs, 200))
    fabrik = os.path.abspath(args.bin)
    if args.replay:
        return compare(args, fabrik, args.replay)
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        sys.exit("no Slurm cluster answers `scontrol ping`: start one with .ci/slurm.sh start")
    rng = random.Random(args.seed)
    run = f"bench{int(time.time())}"
    work = tempfile.mkdtemp(prefix="fabrik-twin-vs-slurm-")
    per_node = max(int(x) for x in sh("sinfo", "-h", "-N", "-o", "%G").replace("gpu:", " ").replace("h100:", "").split()
                   if x.isdigit())
    nodes_total = len(set(sh("sinfo", "-h", "-N", "-o", "%N").split()))
    total = per_node * nodes_total
    sizes = [g for g in (1, 1, 2, 2, 4, 4, 8, 8, 16, 32) if g <= total and (g <= per_node or g % per_node == 0)]
    jobs = []
    for i in range(n):
        gpus = rng.choice(sizes)
        limit_min = rng.randint(1, 10)  # Slurm time limits are whole minutes
        runtime = rng.randint(5, min(90, limit_min * 60 - 5))
        jobs.append({"i": i, "gpus": gpus, "runtime": runtime, "limit": limit_min,
                     "account": rng.choice(["research", "sme"]),
                     "offset": round(i * 60.0 / n + rng.uniform(0, 1), 1)})
    # slurmctld logs each backfill cycle's start with the Backfill debug flag: the cycles' phase
    conf0 = sh("scontrol", "show", "config")
    log_path = next((l.split("=", 1)[1].strip() for l in conf0.splitlines() if l.startswith("SlurmctldLogFile")), "")
    # Backfill: each cycle's plans; BackfillMap: each test of a job (start, usable nodes);
    # verbose: why a job is tested again later ("Try later", overlaps)
    sh("scontrol", "setdebugflags", "+Backfill", check=False)
    sh("scontrol", "setdebugflags", "+BackfillMap", check=False)
    sh("scontrol", "setdebug", "verbose", check=False)
    log_offset = os.path.getsize(log_path) if log_path and os.path.exists(log_path) else None
    t0 = time.time()
    for j in jobs:
        delay = t0 + j["offset"] - time.time()
        if delay > 0:
            time.sleep(delay)
        g, nodes = (per_node, j["gpus"] // per_node) if j["gpus"] > per_node else (j["gpus"], 1)
        sh("sbatch", "--parsable", "--no-requeue", f"--job-name={run}-{j['i']}", f"--nodes={nodes}",
           f"--gres=gpu:{g}", "--cpus-per-gpu=1", f"--account={j['account']}", f"--time={j['limit']}",
           f"--output={work}/%j.out", f"--chdir={work}", "--wrap", f"sleep {j['runtime']}")
    deadline = time.time() + 1800
    while time.time() < deadline:
        left = sh("squeue", "-h", "-o", "%j").split()
        if not any(x.startswith(run + "-") for x in left):
            break
        time.sleep(2)
    fields = ("JobIDRaw,JobID,JobName%40,Submit,Start,End,Timelimit,Elapsed,AllocTRES,ReqTRES,Account,User,"
              "QOS,Partition,State,ExitCode,NodeList")
    sacct_path = os.path.join(work, "sacct.txt")
    for _ in range(30):  # accounting may lag the controller a little
        out = sh("sacct", "-a", "-X", "-P", "-S", "now-2hours", f"--format={fields}")
        lines = out.splitlines()
        mine = [l for l in lines[1:] if f"|{run}-" in l]
        if len(mine) >= n and all("|COMPLETED|" in l or "|TIMEOUT|" in l for l in mine):
            break
        time.sleep(1)
    with open(sacct_path, "w") as f:
        f.write(lines[0] + "\n" + "\n".join(mine) + "\n")
    for name in ("slurm.conf", "topology.conf", "gres.conf"):
        with open(f"/etc/slurm/{name}") as src, open(os.path.join(work, name), "w") as dst:
            dst.write(src.read())
    # the association tree (Fair Tree ranks its users) and the QOS table
    with open(os.path.join(work, "assoc.txt"), "w") as f:
        f.write(sh("sacctmgr", "-P", "show", "assoc", "format=Account,User,ParentName,Fairshare"))
    with open(os.path.join(work, "qos.txt"), "w") as f:
        f.write(sh("sacctmgr", "-P", "show", "qos", "format=Name,Priority,MaxWall"))
    conf = sh("scontrol", "show", "config")
    setting = lambda key: next((l.split("=", 1)[1].strip() for l in conf.splitlines() if l.startswith(key)), "")
    meta = {"jobs": n, "cluster": f"{nodes_total} nodes x {per_node} GPUs", "seed": args.seed,
            "slurm_config": f"{setting('SchedulerType')} ({setting('SchedulerParameters') or 'defaults'}), "
                            f"{setting('PriorityType')}"}
    if log_offset is not None:
        with open(log_path, errors="replace") as f:
            f.seek(log_offset)
            cycles = [l[1:20] for l in f if "_attempt_backfill: beginning" in l]
        first_submit = min(time.mktime(time.strptime(r.split("|")[3], "%Y-%m-%dT%H:%M:%S"))
                           for r in mine)
        interval = int(next((kv.split("=")[1] for kv in setting("SchedulerParameters").split(",")
                             if kv.startswith("bf_interval=")), "30"))
        phases = [int(time.mktime(time.strptime(c, "%Y-%m-%dT%H:%M:%S")) - first_submit) % interval for c in cycles]
        if phases:
            meta["bf_phase_s"] = max(set(phases), key=phases.count)
            meta["bf_cycles_logged"] = len(phases)
    with open(os.path.join(work, "meta.json"), "w") as f:
        json.dump(meta, f)
    compare(args, fabrik, work)


def compare(args, fabrik, work):
    """The twin on the run's own files, per policy, against Slurm's record in sacct.txt."""
    sacct_path = os.path.join(work, "sacct.txt")
    with open(os.path.join(work, "meta.json")) as f:
        meta = json.load(f)
    # Slurm's record: start offsets from the first submission
    real = {}
    with open(sacct_path) as f:
        for row in csv.DictReader(f, delimiter="|"):
            real[row["JobID"]] = row
    fac = os.path.join(work, "facility.toml")
    extra = []
    for flag, name in (("--assoc", "assoc.txt"), ("--qos", "qos.txt")):
        if os.path.exists(os.path.join(work, name)):
            extra += [flag, os.path.join(work, name)]
    sh(fabrik, "facility", "import", os.path.join(work, "slurm.conf"), "--topology",
       os.path.join(work, "topology.conf"), "--gres", os.path.join(work, "gres.conf"), *extra, "-o", fac)
    phase = args.bf_phase if args.bf_phase is not None else meta.get("bf_phase_s", 0)
    meta["bf_phase_s"] = phase
    with open(fac) as f:
        text = f.read()
    with open(fac, "w") as f:
        f.write(re.sub(r"(?m)^bf_phase_s = \d+$", f"bf_phase_s = {phase}", text, count=1))

    def epoch(s):
        return time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%S"))

    first = min(epoch(r["Submit"]) for r in real.values())
    report = dict(meta)
    report.update({
        "multi_node_jobs": sum(1 for r in real.values() if "," in r["NodeList"] or "[" in r["NodeList"]),
        "slurm_makespan_s": round(max(epoch(r["End"]) for r in real.values()) - first, 1),
        "files": work,
        "policies": {},
    })
    tz = open("/etc/timezone").read().strip() if os.path.exists("/etc/timezone") else "UTC"
    for policy in args.policies.split(","):
        jobs_csv = os.path.join(work, f"twin-{policy}.csv")
        sh(fabrik, "simulate", "--facility", fac, "--workload", f"sacct:{sacct_path}", "--policy", policy,
           "--tz", tz, "--jobs-csv", jobs_csv, "--quiet")
        twin = {}
        with open(jobs_csv) as f:
            for row in csv.DictReader(f):
                twin[row["name"]] = row
        pairs = []
        for jid, r in real.items():
            if jid in twin:
                pairs.append((jid, epoch(r["Start"]) - first, float(twin[jid]["start_s"])))
        diffs = [abs(a - b) for _, a, b in pairs]
        report["policies"][policy] = {
            "mean_abs_start_error_s": round(sum(diffs) / len(diffs), 2),
            "max_abs_start_error_s": round(max(diffs), 1),
            "share_within_5s": round(sum(1 for d in diffs if d <= 5) / len(diffs), 3),
            "share_within_10s": round(sum(1 for d in diffs if d <= 10) / len(diffs), 3),
            "spearman_start_order": round(spearman([p[1] for p in pairs], [p[2] for p in pairs]), 3),
            "worst": [{"job": p[0], "slurm_start_s": p[1], "twin_start_s": p[2]}
                      for p in sorted(pairs, key=lambda p: -abs(p[1] - p[2]))[:5]],
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
