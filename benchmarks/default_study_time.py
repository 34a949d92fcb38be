"""Wall time of a study, by rule, from Snakemake `benchmark:` files (+ the end-to-end time).

    python benchmarks/default_study_time.py --run        # clean run of the default study, timed
    python benchmarks/default_study_time.py              # summarise the last run's benchmark files
    python benchmarks/default_study_time.py --study smoke
    python benchmarks/default_study_time.py --run --study smoke --env FTGEN_EVAL_SERVER=0 --label no_server
    python benchmarks/default_study_time.py --run --study eval_grid_offline \
        --configfile benchmarks/config/throughput_offline.yaml --configfile benchmarks/config/eval_grid_offline.yaml
    python benchmarks/default_study_time.py --study yang2024_cpu --wall-s 5400 \
        --command "--cores 2 --configfile config/studies/yang2024-cpu.yaml"   # a run timed elsewhere

Writes benchmarks/out/<study>_time[_<label>].{json,md}. Figures on these shared machines vary +-40 %.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from benchio import write_results  # benchmarks/benchio.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]


def summarise(study: str) -> dict:
    bench = REPO / "results" / study / "benchmarks"
    per_rule: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "total_s": 0.0, "max_s": 0.0, "peak_rss_mb": 0.0})
    for tsv in bench.rglob("*.tsv"):
        rule = tsv.relative_to(bench).parts[0].removesuffix(".tsv")  # a rule of one job: <rule>.tsv
        with open(tsv) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        s, rss = float(row["s"]), float(row["max_rss"]) if row["max_rss"] not in ("", "NA", "-") else 0.0
        entry = per_rule[rule]
        entry["jobs"] += 1
        entry["total_s"] += s
        entry["max_s"] = max(entry["max_s"], s)
        if rss > entry["peak_rss_mb"]:
            entry["peak_rss_mb"], entry["peak_job"] = rss, str(tsv.relative_to(bench))
    return dict(per_rule)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", default="default")
    ap.add_argument("--run", action="store_true", help="delete results/<study> and run it, timed")
    ap.add_argument("--cores", default="2")
    ap.add_argument("--wall-s", type=float, help="end-to-end wall time of a run timed outside this script")
    ap.add_argument("--command", help="the snakemake arguments of that run")
    ap.add_argument(
        "--configfile", action="append", default=[], help="run these (in order) instead of config/studies/<study>.yaml"
    )
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set for the run")
    ap.add_argument("--label", help="suffix of the output files (a variant of the same study)")
    args = ap.parse_args()
    env = {**os.environ, **dict(e.split("=", 1) for e in args.env)}
    out = {"study": args.study, **({"env": args.env} if args.env else {})}
    if args.wall_s:
        out["wall_time_s"], out["command"] = args.wall_s, " ".join([*args.env, "snakemake", args.command or "?"])
    if args.run:
        shutil.rmtree(REPO / "results" / args.study, ignore_errors=True)
        cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", args.cores]
        if args.configfile:
            cmd += ["--configfile", *args.configfile]
        elif args.study != "default":
            cmd += ["--configfile", f"config/studies/{args.study}.yaml"]
        start = time.time()
        subprocess.run(cmd, cwd=REPO, check=True, env=env)
        out["wall_time_s"] = round(time.time() - start, 1)
        out["command"] = " ".join(args.env + ["snakemake"] + cmd[1:])
    rules = summarise(args.study)
    out["rules"] = rules
    out["peak_rss_mb"] = max((r["peak_rss_mb"] for r in rules.values()), default=0)
    lines = [f"# Study `{args.study}`: time by rule (Snakemake benchmark files)", ""]
    if "wall_time_s" in out:
        lines.append(f"End-to-end wall time: **{out['wall_time_s'] / 60:.1f} min** (`{out['command']}`)\n")
    lines += ["| rule | jobs | total s | max s | peak RSS MB |", "|---|---|---|---|---|"]
    for rule, r in sorted(rules.items(), key=lambda kv: -kv[1]["total_s"]):
        lines.append(f"| {rule} | {r['jobs']} | {r['total_s']:.0f} | {r['max_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    md = "\n".join(lines) + "\n"
    write_results(f"{args.study}_time" + (f"_{args.label}" if args.label else ""), out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
