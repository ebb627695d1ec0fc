#!/usr/bin/env python3
"""Failed requests per deploy strategy (issue 9, target 4): for each STRATEGY, 10 consecutive
`fab deploy` (v1 -> v2) and `fab rollback` (-> v1) on the staging host while a prober sends 20
requests per second through the proxy (GET /api/v1/documents); prints the requests sent and the
requests that failed (no 2xx within 5 s) per strategy. The blue-green figure is the target (0);
the recreate figure is reported, not judged.

The sandbox is reset at the start of each strategy: run it under the sandbox lock for the whole
run, e.g. `with-sandbox /work/main/.venv/bin/python bench/bluegreen.py`.

Usage: bench/bluegreen.py [--rounds N] [--strategies blue-green,recreate] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.prober import Prober  # noqa: E402

CTL = ROOT / "sandbox" / "ctl"
FAB = str(Path(sys.executable).parent / "fab")
URL = "http://127.0.0.1:8080/api/v1/documents"


def fab(strategy: str, *args: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    env["DEPLOY_STRATEGY"] = strategy
    return subprocess.run([FAB, *args, "--stage", "staging"], cwd=ROOT, env=env, capture_output=True, timeout=600).returncode


def run_strategy(strategy: str, rounds: int) -> dict:
    """``rounds`` deploys and as many rollbacks, all under one prober; exit codes other than 0 count too."""
    subprocess.run([str(CTL), "reset"], check=True, capture_output=True)
    subprocess.run([str(CTL), "version", "v2"], check=True, capture_output=True)
    bad_runs = []
    with Prober(URL) as probe:
        for i in range(rounds):
            for what in ("deploy", "rollback"):
                code = fab(strategy, what)
                print(f"  {strategy:10} round {i + 1:2}: {what:8} exit {code}", file=sys.stderr, flush=True)
                if code != 0:
                    bad_runs.append(f"{what} {i + 1}: exit {code}")
    return {"strategy": strategy, "deploys": rounds, "rollbacks": rounds, "requests": probe.total,
            "failed": len(probe.failures), "failures": sorted(set(probe.failures)), "bad_runs": bad_runs}


def table(rows: list[dict]) -> str:
    lines = ["strategy    deploys  rollbacks  requests  failed  verdict",
             "----------  -------  ---------  --------  ------  -------"]
    for r in rows:
        verdict = ("PASS" if r["failed"] == 0 and not r["bad_runs"] else "FAIL") if r["strategy"] == "blue-green" else "reported"
        lines.append(f"{r['strategy']:10}  {r['deploys']:7}  {r['rollbacks']:9}  {r['requests']:8}  {r['failed']:6}  {verdict}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--strategies", default="blue-green,recreate")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [run_strategy(x, args.rounds) for x in args.strategies.split(",")]
    subprocess.run([str(CTL), "reset"], capture_output=True)
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
