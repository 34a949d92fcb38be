"""Planning time at HPC scale: wall time of `snakemake -n` for study configs, and job counts.

    python benchmarks/plan_time.py                                   # yang2024 (+ any given)
    python benchmarks/plan_time.py config/studies/yang2024.yaml config/studies/smoke.yaml

Each config is planned `--repeat` times (default 3) in a fresh process; the median is reported
against the 15 s goal. Writes benchmarks/out/plan_time.{json,md}. No hub access is needed: a
dry run resolves the DAG from the config alone.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 15.0


def plan(config: str) -> tuple[float, int]:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-n", "--quiet", "rules", "--configfile", config]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"planning {config} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    total = re.search(r"^total\s+(\d+)$", proc.stdout, re.M)
    return wall, int(total[1]) if total else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("configs", nargs="*", default=["config/studies/yang2024.yaml"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    results = []
    for config in args.configs:
        runs = [plan(config) for _ in range(args.repeat)]
        walls = [w for w, _ in runs]
        results.append({"config": config, "jobs": runs[0][1], "median_s": round(statistics.median(walls), 2),
                        "runs_s": [round(w, 2) for w in walls], "goal_s": GOAL_S,
                        "ratio_to_goal": round(statistics.median(walls) / GOAL_S, 2)})
    lines = ["# Planning time (`snakemake -n`)", "", "| config | jobs | median s | runs s | goal s | median / goal |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['jobs']} | {r['median_s']} | {', '.join(map(str, r['runs_s']))} | {GOAL_S} | "
              f"{r['ratio_to_goal']} |" for r in results]
    md = "\n".join(lines) + "\n"
    out = REPO / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "plan_time.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "plan_time.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
