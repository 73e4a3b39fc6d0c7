#!/usr/bin/env python3
"""Red-team durability test of `fabrik serve` (loopback only, bounded loops).

Concurrent submitters send jobs while the server is SIGKILLed and restarted again and again.
Afterwards every job must be accounted for:

  acknowledged  submissions answered 201 (the server promised to keep them)
  found         acknowledged jobs present after the last restart
  lost          acknowledged but absent
  duplicated    a submission stored more than once (each name is submitted once)
  run twice     a job whose command ran more than once (no job here is preemptible)
  unended       jobs not in a final state when the test gives up

Usage: tools/redteam-durability.py [--bin target/release/fabrik] [--rounds 25] [--submitters 8] [--jobs 100]

As root, jobs run as two Unix users (fabrik-ta, fabrik-tb; created with useradd if missing), as
in production; as an ordinary user the server runs with --single-user. Standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

FINAL = {"completed", "failed", "cancelled", "timeout"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, token, method, path, body=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            try:
                return r.status, json.loads(raw or b"null")
            except ValueError:
                return r.status, raw.decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, OSError):
        return None, None


def ensure_users():
    if os.geteuid() != 0:
        return None
    users = ["fabrik-ta", "fabrik-tb"]
    for u in users:
        if subprocess.run(["id", u], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", u], check=True)
    return users


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/fabrik")
    ap.add_argument("--rounds", type=int, default=25, help="SIGKILLs (at most 500)")
    ap.add_argument("--submitters", type=int, default=8, help="concurrent submitters (at most 64)")
    ap.add_argument("--interval", type=float, default=0.7, help="seconds between kills")
    ap.add_argument("--jobs", type=int, default=100, help="jobs per submitter (at most 10,000)")
    ap.add_argument("--executor", default="local", choices=["local", "slurm"],
                    help="slurm: jobs go to the cluster of .ci/slurm.sh (the facility is Slurm's)")
    args = ap.parse_args()
    rounds, submitters = min(args.rounds, 500), min(args.submitters, 64)
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is not an executable; build it with `cargo build --release`")

    root = tempfile.mkdtemp(prefix="fabrik-redteam-")
    os.chmod(root, 0o755)
    data = os.path.join(root, "data")
    runs = os.path.join(root, "runs")
    open(runs, "w").close()
    os.chmod(runs, 0o666)
    token = subprocess.run([binary, "admin", "init", "--data-dir", data], capture_output=True, text=True,
                           check=True).stdout.strip()
    users = ensure_users()
    if users:
        fac = os.path.join(root, "facility.toml")
        with open(fac, "w") as f:
            f.write('name = "redteam"\n[[pool]]\ngpu = "H100"\ndomain_gpus = 8\ndomains_per_group = 1\ngroups = 1\n')
            for i, cls in enumerate(["research", "sme", "industry", "public"]):
                f.write(f'[[run_as]]\naccount = "{cls}"\nuser = "{users[i % 2]}"\n')
        isolation = ["--facility", fac]
    else:
        isolation = ["--single-user"]
    port = free_port()
    log = open(os.path.join(root, "serve.log"), "a")

    def start():
        where = ["--gpus", "8"] if args.executor == "local" else ["--executor", "slurm", "--slurm-start-grace-s", "60"]
        p = subprocess.Popen([binary, "serve", "--data-dir", data, "--bind", f"127.0.0.1:{port}",
                              "--tick-ms", "20", *where, *isolation], stdout=subprocess.DEVNULL, stderr=log)
        for _ in range(400):
            if request(port, token, "GET", "/healthz")[0] == 200:
                return p
            time.sleep(0.025)
        p.kill()
        sys.exit(f"the server did not come up; see {root}/serve.log")

    acked, errors = {}, [0]
    lock = threading.Lock()
    stop = threading.Event()
    accounts = ["research/open-llm/eval", "sme/startup-a/llm"]

    def submitter(k):
        n = 0
        while not stop.is_set() and n < min(args.jobs, 10_000):
            name = f"s{k}-{n}"
            n += 1
            body = {"name": name, "gpus": 1, "walltime": 600, "account": accounts[n % 2],
                    "command": ["sh", "-c", f"echo $FABRIK_JOB_ID {name} >> {runs}; sleep 0.1"]}
            st, v = request(port, token, "POST", "/v1/jobs", body)
            with lock:
                if st == 201:
                    acked[name] = v["id"]
                else:
                    errors[0] += 1
            # spread the submissions over all the kills
            time.sleep(pace if st is not None else 0.02)

    pace = args.interval * rounds / max(args.jobs, 1)
    server = start()
    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(submitters)]
    for t in threads:
        t.start()
    for _ in range(rounds):
        time.sleep(args.interval)
        server.send_signal(signal.SIGKILL)
        server.wait()
        server = start()
    stop.set()
    for t in threads:
        t.join()

    deadline = time.time() + 300
    jobs = []
    while time.time() < deadline:
        st, v = request(port, token, "GET", "/v1/jobs?limit=100000", timeout=30)
        if st == 200:
            jobs = v["jobs"]
            if all(j["state"] in FINAL for j in jobs):
                break
        time.sleep(0.5)
    server.send_signal(signal.SIGTERM)
    server.wait()

    by_name = {}
    for j in jobs:
        by_name.setdefault(j["name"], []).append(j)
    ran = {}
    with open(runs) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                ran[parts[1]] = ran.get(parts[1], 0) + 1
    found = sum(1 for n in acked if n in by_name)
    report = {
        "kills": rounds,
        "submitters": submitters,
        "acknowledged": len(acked),
        "refused_or_unanswered": errors[0],
        "stored": len(jobs),
        # committed, but the answer was lost to a kill: kept, never duplicated
        "stored_unacknowledged": sum(1 for n in by_name if n not in acked),
        "found": found,
        "lost": len(acked) - found,
        "duplicated": sum(1 for js in by_name.values() if len(js) > 1),
        "run_twice": sum(1 for c in ran.values() if c > 1),
        "unended": sum(1 for j in jobs if j["state"] not in FINAL),
        "states": {s: sum(1 for j in jobs if j["state"] == s) for s in sorted({j["state"] for j in jobs})},
        "isolation": "run_as users" if users else "single-user",
        "executor": args.executor,
    }
    print(json.dumps(report, indent=2))
    ok = report["lost"] == 0 and report["duplicated"] == 0 and report["run_twice"] == 0 and report["unended"] == 0
    if ok:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(data + "-jobs", ignore_errors=True)
    else:
        print(f"kept {root} for inspection", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
