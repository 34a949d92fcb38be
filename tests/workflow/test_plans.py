"""Every study plans the same jobs as before the issue-15 redesign (tests/plans/*.json, written
from that code by tests/plans/listing.py): same rules, job counts, output paths, resources, and
params — so finished results stay finished. The deliberate changes are listed below. And the
evaluation of the largest study is a few cluster jobs, not one per cell."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import yaml

PLANS = Path(__file__).resolve().parents[1] / "plans"
spec = importlib.util.spec_from_file_location("listing", PLANS / "listing.py")
listing = importlib.util.module_from_spec(spec)
spec.loader.exec_module(listing)

# rule -> why its params differ from the stored listing (their jobs rerun once)
PARAMS_CHANGED = {
    "s3ft_report": "the eval folder it globbed is no longer a param: the predictions it reads are declared inputs",
}

# rule -> why its resources differ (resources never trigger reruns)
RESOURCES_CHANGED = {
    "evaluate": "eval_slots=1 (cells of a model tag share one cluster job and model server) and runtime "
    "per cell (resources.evaluate.cell_runtime)",
    "finetune": "cpu_allocator (the malloc `ftgen launch` preloads: resources.finetune.cpu_allocator)",
}


# rule -> what it adds (a new job of `all`; nothing else reruns)
RULES_ADDED = {"compute_table": "tables/compute.{csv,md}: throughput and MFU from the jobs' records"}


@functools.cache
def planned(configfile: str) -> list:
    """Snakemake's jobs for the whole study, planned once per session (yang2024's 6,707 take
    ~15 s), with the profile's SLURM settings unset as in CI."""
    with pytest.MonkeyPatch.context() as env:
        for var in ("FTGEN_SLURM_PARTITION", "FTGEN_SLURM_GPU_PARTITION", "FTGEN_SLURM_ACCOUNT", "FTGEN_SLURM_QOS"):
            env.delenv(var, raising=False)
        env.chdir(listing.REPO)
        return listing.planned_dag(configfile, listing.REPO)


@pytest.mark.parametrize("configfile", listing.CONFIGS)
def test_plan_is_unchanged(configfile):
    stored_file = listing.listing_path(configfile)
    assert stored_file.exists(), f"no stored plan for {configfile}: python tests/plans/listing.py --write {configfile}"
    stored = json.loads(stored_file.read_text())
    planned_now = listing.digest(listing.job_rows(planned(configfile)))
    added = {rule for rule in planned_now if rule.endswith(tuple(RULES_ADDED))}  # config/hpc.yaml: <study>_<rule>
    assert added and sorted(set(planned_now) - added) == sorted(stored), "the set of rules changed"
    for rule in added:
        assert planned_now[rule]["jobs"] == 1
        planned_now.pop(rule)
    for rule, now in planned_now.items():
        before = stored[rule]
        for key in ("jobs", "outputs", "resources", "params"):
            if key == "params" and rule.endswith(tuple(PARAMS_CHANGED)):  # config/hpc.yaml: <study>_<rule>
                continue
            if key == "resources" and rule.endswith(tuple(RESOURCES_CHANGED)):
                continue
            assert now[key] == before[key], f"{configfile}: rule {rule}: {key} differ (sample now: {now['sample']})"


def test_yang2024_evaluation_is_one_cluster_job_per_model_tag():
    """yang2024 plans 6,624 eval cells for 46 models (45 fine-tunes + base). Under the SLURM
    profile the cells of one model tag are one group job that loads the model once (its cells
    one after another: one eval slot per group job): submissions and loads are the group jobs."""
    jobs = [j for j in planned("config/studies/yang2024.yaml") if j.rule.name == "evaluate"]
    profile = yaml.safe_load((listing.REPO / "profiles" / "slurm" / "config.yaml").read_text())
    pattern = jobs[0].rule._group  # `.group` is None outside cluster execution
    per_group = dict(entry.split("=") for entry in profile["group-components"])
    cells_per_job = int(per_group[pattern])
    assert "eval_slots=1" in profile["resources"] and "eval_slots=local" in profile["set-resource-scopes"]
    assert all(j.resources["eval_slots"] == 1 for j in jobs)
    groups = Counter(pattern.format(**j.wildcards) for j in jobs)
    submissions = sum(math.ceil(n / cells_per_job) for n in groups.values())
    models = {(j.wildcards.model, j.wildcards.model_tag) for j in jobs}
    assert len(jobs) == 6624 and len(models) == 46
    assert submissions <= len(jobs) // 10  # <= 662, was one per cell
    assert submissions <= 2 * len(models)  # model loads: one per group job
    print(f"yang2024: {len(jobs)} eval cells -> {submissions} SLURM jobs, {len(models)} models")


def test_one_cell_is_still_a_target(monkeypatch):
    monkeypatch.chdir(listing.REPO)
    cell = "results/yang2024/eval/llama2_7b/base/xsum/f0.k0/scores.json"
    jobs = listing.planned_dag("config/studies/yang2024.yaml", listing.REPO, targets=[cell])
    evaluate = [j for j in jobs if j.rule.name == "evaluate"]
    assert [str(o) for j in evaluate for o in j.output if o.endswith("scores.json")] == [cell]
