#!/usr/bin/env python3
"""Twin against real Slurm: one small workload run twice and compared job by job.

1. Through real Slurm's own scheduler (sched/backfill; fabrik not involved): a few dozen sleep
   jobs of 1-8 GPUs (up to a 2-node gang) with time limits and runtimes, submitted at offsets.
2. Through `fabrik simulate --policy fifo-backfill` on the facility `fabrik facility import`
   makes of the cluster's own slurm.conf/topology.conf/gres.conf, with the same jobs read back
   from `sacct` (`--workload sacct:`).

Reports per-job start-time differences (relative to the first submission): mean absolute error,
the share of jobs starting within 10 s, and Spearman's rank correlation of start order.

Needs the cluster of `.ci/slurm.sh start` (root) and a built fabrik (`--bin`). Bounded: at most
200 jobs, at most 20 minutes of waiting. Loopback only.

Usage: tools/twin-vs-slurm.py [--bin target/release/fabrik] [--jobs 36] [--seed 7]
"""

import argparse
import csv
import json
import os
import random
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
    ap.add_argument("--jobs", type=int, default=36)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    n = max(2, min(args.jobs, 200))
    fabrik = os.path.abspath(args.bin)
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        sys.exit("no Slurm cluster answers `scontrol ping`: start one with .ci/slurm.sh start")
    rng = random.Random(args.seed)
    run = f"bench{int(time.time())}"
    work = tempfile.mkdtemp(prefix="fabrik-twin-vs-slurm-")
    jobs = []
    for i in range(n):
        gpus = rng.choice([1, 1, 2, 2, 4, 4, 8])
        runtime = rng.randint(5, 40)
        limit_min = rng.choice([1, 1, 2])  # Slurm time limits are whole minutes
        jobs.append({"i": i, "gpus": gpus, "runtime": runtime, "limit": limit_min,
                     "offset": round(i * 60.0 / n + rng.uniform(0, 1), 1)})
    t0 = time.time()
    for j in jobs:
        delay = t0 + j["offset"] - time.time()
        if delay > 0:
            time.sleep(delay)
        per_node, nodes = (4, 2) if j["gpus"] > 4 else (j["gpus"], 1)
        sh("sbatch", "--parsable", "--no-requeue", f"--job-name={run}-{j['i']}", f"--nodes={nodes}",
           f"--gres=gpu:{per_node}", f"--time={j['limit']}", f"--output={work}/%j.out", f"--chdir={work}",
           "--wrap", f"sleep {j['runtime']}")
    deadline = time.time() + 1200
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
    # Slurm's record: start offsets from the first submission
    real = {}
    with open(sacct_path) as f:
        for row in csv.DictReader(f, delimiter="|"):
            real[row["JobID"]] = row
    fac = os.path.join(work, "facility.toml")
    sh(fabrik, "facility", "import", "/etc/slurm/slurm.conf", "--topology", "/etc/slurm/topology.conf",
       "--gres", "/etc/slurm/gres.conf", "-o", fac)
    jobs_csv = os.path.join(work, "twin-jobs.csv")
    sh(fabrik, "simulate", "--facility", fac, "--workload", f"sacct:{sacct_path}", "--policy", "fifo-backfill",
       "--tz", open("/etc/timezone").read().strip() if os.path.exists("/etc/timezone") else "UTC",
       "--jobs-csv", jobs_csv, "--quiet")
    twin = {}
    with open(jobs_csv) as f:
        for row in csv.DictReader(f):
            twin[row["name"]] = row

    def epoch(s):
        return time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%S"))

    first = min(epoch(r["Submit"]) for r in real.values())
    pairs = []
    for jid, r in real.items():
        if jid in twin:
            pairs.append((jid, epoch(r["Start"]) - first, float(twin[jid]["start_s"]), r["JobName"]))
    pairs.sort(key=lambda p: p[1])
    diffs = [abs(a - b) for _, a, b, _ in pairs]
    conf = sh("scontrol", "show", "config")
    sched_params = next((l.split("=", 1)[1].strip() for l in conf.splitlines() if l.startswith("SchedulerParameters")), "")
    spanning = sum(1 for r in real.values() if "," in r["NodeList"] or "[" in r["NodeList"])
    report = {
        "jobs": len(pairs),
        "slurm_config": f"sched/backfill ({sched_params or 'defaults: bf_interval=30'}), priority/basic (FIFO)",
        "multi_node_jobs": spanning,
        "mean_abs_start_error_s": round(sum(diffs) / len(diffs), 2),
        "max_abs_start_error_s": round(max(diffs), 1),
        "share_within_10s": round(sum(1 for d in diffs if d <= 10) / len(diffs), 3),
        "spearman_start_order": round(spearman([p[1] for p in pairs], [p[2] for p in pairs]), 3),
        "slurm_makespan_s": round(max(epoch(r["End"]) for r in real.values()) - first, 1),
        "worst": [{"job": p[0], "slurm_start_s": p[1], "twin_start_s": p[2]}
                  for p in sorted(pairs, key=lambda p: -abs(p[1] - p[2]))[:5]],
        "files": work,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
