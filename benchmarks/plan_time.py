"""Planning time at HPC scale: wall time of `snakemake -n` for study configs, and job counts.

    python benchmarks/plan_time.py                  # the three HPC studies, then all three in one DAG
    python benchmarks/plan_time.py --repeat 5       # more runs per config
    python benchmarks/plan_time.py config/studies/yang2024.yaml config/studies/smoke.yaml

The default configs are config/studies/{yang2024,barnett2024,gupta2025}.yaml and config/hpc.yaml,
which lists those three under `studies:` and plans them as one DAG (workflow/studies.smk):
    snakemake -n --configfile config/hpc.yaml
Each config is planned `--repeat` times (default 3), each time in a fresh process running
`snakemake -n --quiet rules --configfile CONFIG`. The runs go round-robin over the configs
(config 1, 2, 3, 4, 1, 2, ...), so drift in the load of a shared machine hits every config alike.
Reported per config: jobs, median wall time against the 15 s goal, every run's wall time, and the
median CPU time (user + sys of the snakemake process), which drifts less than wall time where
other work shares the cores. Writes benchmarks/out/plan_time.{json,md}. No hub access is needed:
a dry run resolves the DAG from the config alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchio import write_results  # benchmarks/benchio.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 15.0
HPC = ["config/studies/yang2024.yaml", "config/studies/barnett2024.yaml", "config/studies/gupta2025.yaml"]
TOGETHER = "config/hpc.yaml"  # `studies:` = the three above, one DAG
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def plan(config: str) -> tuple[float, float, int]:
    """One dry run in a fresh process: (wall s, CPU s, jobs)."""
    cmd = [SNAKEMAKE, "-n", "--quiet", "rules", "--configfile", config]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"planning {config} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    total = re.search(r"^total\s+(\d+)$", proc.stdout, re.M)
    return wall, cpu, int(total[1]) if total else 0


def label(config: str) -> str:
    return f"{config} (all three together)" if config == TOGETHER else config


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="*", default=[*HPC, TOGETHER])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[tuple[float, float, int]]] = {c: [] for c in args.configs}
    load_before = os.getloadavg()
    for i in range(args.repeat):  # round-robin: every config once per round
        for config in args.configs:
            runs[config].append(plan(config))
            wall, cpu, jobs = runs[config][-1]
            print(
                f"round {i + 1}/{args.repeat}  {config}: {jobs} jobs, {wall:.2f} s wall, {cpu:.2f} s CPU",
                file=sys.stderr,
            )
    load_after = os.getloadavg()
    results = []
    for config, rs in runs.items():
        walls, cpus, jobs = [w for w, _, _ in rs], [c for _, c, _ in rs], {j for _, _, j in rs}
        if len(jobs) != 1:
            raise SystemExit(f"{config}: job counts differ between runs: {sorted(jobs)}")
        median = statistics.median(walls)
        results.append(
            {
                "config": config,
                "label": label(config),
                "jobs": jobs.pop(),
                "median_s": round(median, 2),
                "runs_s": [round(w, 2) for w in walls],
                "median_cpu_s": round(statistics.median(cpus), 2),
                "runs_cpu_s": [round(c, 2) for c in cpus],
                "goal_s": GOAL_S,
                "ratio_to_goal": round(median / GOAL_S, 2),
                "within_goal": median < GOAL_S,
            }
        )
    meta = {
        "command": "snakemake -n --quiet rules --configfile CONFIG",
        "repeat": args.repeat,
        "order": "round-robin over configs",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
        "loadavg_1_5_15_after": [round(x, 2) for x in load_after],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    lines = [
        "# Planning time (`snakemake -n`)",
        "",
        f"`python benchmarks/plan_time.py --repeat {args.repeat}`: each config planned {args.repeat} times "
        "(`snakemake -n --quiet rules --configfile CONFIG`, a fresh process each), round-robin over the "
        f"configs; {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after. "
        "CPU s = user + sys of the snakemake process.",
        "",
        "| config | jobs | median s | runs s | median CPU s | goal s | median / goal |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['label']} | {r['jobs']} | {r['median_s']} | {', '.join(map(str, r['runs_s']))} | "
        f"{r['median_cpu_s']} | {GOAL_S} | {r['ratio_to_goal']} |"
        for r in results
    ]
    md = "\n".join(lines) + "\n"
    # a list of per-config results, as before; each names the run it came from
    write_results("plan_time", [{**r, "run": meta} for r in results], md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
