"""The job list `snakemake -n` plans for a config, as a digest to compare before/after a change.

    python tests/plans/listing.py config/studies/yang2024.yaml          # print the digest
    python tests/plans/listing.py --write                                # store every config's

Per rule: the number of jobs, a sha256 of their sorted output paths, a sha256 of their params
(what a job's rerun depends on), one of their resources (what SLURM is asked for), and the first
output paths as a readable sample. The stored digests (tests/plans/*.json) were written from the
code before issue 15's redesign; tests/workflow/test_plans.py plans every study again and
compares. A new study file stores its own: python tests/plans/listing.py --write FILE
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFIGS = (
    ["config/config.yaml"]
    + sorted(str(p.relative_to(REPO)) for p in (REPO / "config" / "studies").glob("*.yaml"))
    + ["config/hpc.yaml"]
)


def planned_dag(configfile: str, workdir: Path, targets: list[str] | None = None) -> list:
    """Snakemake's jobs for the config (`--forceall`: whatever exists), for `targets` or `all`."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
            config_settings=ConfigSettings(configfiles=[REPO / configfile]),
        )
        dag_api = wf.dag(dag_settings=DAGSettings(targets=frozenset(targets or ())))
        workflow = dag_api.workflow_api._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        return list(workflow.dag.jobs)


def planned_jobs(configfile: str, workdir: Path) -> list[tuple[str, list[str], str, str]]:
    """(rule, outputs, params JSON, resources JSON) of every job of the study."""
    return job_rows(planned_dag(configfile, workdir))


def job_rows(jobs: list) -> list[tuple[str, list[str], str, str]]:
    """(rule, outputs, params JSON, resources JSON) of each of Snakemake's `jobs`."""
    return [
        (
            job.rule.name,
            sorted(map(str, job.output)),
            json.dumps({k: v for k, v in job.params.items()}, sort_keys=True, default=str),
            json.dumps(
                {k: v for k, v in job.resources.items() if not k.startswith("_") and k != "tmpdir"},
                sort_keys=True,
                default=str,
            ),
        )
        for job in jobs
    ]


def digest(jobs: list[tuple[str, list[str], str, str]]) -> dict:
    by_rule: dict[str, list] = {}
    for rule, outputs, params, resources in jobs:
        by_rule.setdefault(rule, []).append((outputs, params, resources))
    out = {}
    for rule, items in sorted(by_rule.items()):
        items.sort()
        outputs = "\n".join(" ".join(o) for o, _, _ in items).encode()
        params = "\n".join(" ".join(o) + "\t" + p for o, p, _ in items).encode()
        resources = "\n".join(" ".join(o) + "\t" + r for o, _, r in items).encode()
        out[rule] = {
            "jobs": len(items),
            "outputs": hashlib.sha256(outputs).hexdigest(),
            "params": hashlib.sha256(params).hexdigest(),
            "resources": hashlib.sha256(resources).hexdigest(),
            "sample": [o for o, _, _ in items[:2]],
        }
    return out


def listing_path(configfile: str) -> Path:
    return HERE / (configfile.replace("/", "__").removesuffix(".yaml") + ".json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*")
    ap.add_argument("--write", action="store_true", help="store the digests under tests/plans/")
    args = ap.parse_args()
    os.chdir(REPO)
    for config in args.configs or CONFIGS:
        result = digest(planned_jobs(config, REPO))
        if args.write:
            listing_path(config).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
            print(f"{listing_path(config)}: {sum(r['jobs'] for r in result.values())} jobs")
        else:
            print(json.dumps({config: result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
