"""Dress rehearsal of the GPU study configs (ftgen.study.rehearsal): config/hpc.yaml, i.e.
yang2024 + barnett2024 + gupta2025 in one DAG, run to completion on CPU with `--config
rehearsal=true` (hub data from tests/fixtures/build/hub, tiny models of each hub model's family,
DeepSpeed configs as written). Marked `rehearsal`: `.ci/run` runs it as its own step."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from ftgen.study import load_yaml
from helpers import copy_repo, planned_jobs, smk

pytestmark = pytest.mark.rehearsal

GPU_STUDIES = ["yang2024", "barnett2024", "gupta2025"]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    wd = copy_repo(tmp_path_factory, "rehearsal")
    start = time.monotonic()
    proc = smk(wd, "--cores", "2", "--configfile", "config/hpc.yaml", "--config", "rehearsal=true", check=False)
    elapsed = time.monotonic() - start
    log = proc.stdout + proc.stderr
    ran = Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log))
    print(f"rehearsal of config/hpc.yaml: {sum(ran.values())} jobs in {elapsed:.0f} s")
    for study in GPU_STUDIES:
        jobs = sum(n for rule, n in ran.items() if rule.startswith(f"{study}_"))
        seconds = sum(
            float(line.split("\t")[0])
            for tsv in (wd / "results" / "rehearsal" / study / "benchmarks").rglob("*.tsv")
            for line in tsv.read_text().splitlines()[1:2]
        )
        print(f"  {study}: {jobs} jobs, {seconds:.0f} s of job wall time")
    assert proc.returncode == 0, f"rehearsal failed:\n{log[-6000:]}"
    return wd, ran


@pytest.mark.parametrize("study", GPU_STUDIES)
def test_every_rule_of_the_study_ran(rehearsal, study):
    """Every rule the real study plans (its GPU run, not the rehearsal) executed in the rehearsal."""
    wd, ran = rehearsal
    real = planned_jobs(wd, "--configfile", f"config/studies/{study}.yaml")
    # `all` only gathers targets (hpc.yaml's own `all` asks for each study's); the asset cache is
    # fetched by the first study listed with it, for every study (workflow/studies.smk)
    fetched = any(rule.endswith("_fetch_asset") for rule in ran)
    missing = sorted(
        rule
        for rule in real
        if rule != "all" and not ran[f"{study}_{rule}"] and not (rule == "fetch_asset" and fetched)
    )
    assert not missing, f"{study}: rules planned for the cluster but never run in the rehearsal: {missing}"


@pytest.mark.parametrize("study", GPU_STUDIES)
def test_a_single_study_rehearsal_is_the_same_dag(rehearsal, study):
    """`--configfile config/studies/<study>.yaml --config rehearsal=true` finds nothing left to
    do: the study alone plans exactly the jobs the hpc.yaml rehearsal ran for it."""
    wd, _ = rehearsal
    out = smk(wd, "-n", "--configfile", f"config/studies/{study}.yaml", "--config", "rehearsal=true").stdout
    assert "Nothing to be done" in out, out[-3000:]


@pytest.mark.parametrize("study", GPU_STUDIES)
def test_tables_plots_and_deepspeed_as_configured(rehearsal, study):
    """The study's tables (and plots) exist, and every fine-tune ran under the ZeRO stage of the
    DeepSpeed config its recipe names (yang2024: ZeRO-3 + CPU offload; barnett2024: ZeRO-3;
    gupta2025: ZeRO-2), as the DeepSpeed engine reported it."""
    wd, _ = rehearsal
    results = wd / "results" / "rehearsal" / study
    assert [p for p in (results / "tables").glob("*.md") if p.stat().st_size > 0]
    recipe = load_yaml(wd / "config" / "studies" / f"{study}.yaml")["finetune"]["recipe"]
    stage = json.loads((wd / recipe["deepspeed"]).read_text())["zero_optimization"]["stage"]
    manifests = list((results / "finetuned").glob("*/*/manifest.json"))
    assert manifests
    for path in manifests:
        ran = json.loads(path.read_text())["distributed"]
        assert ran["deepspeed_config"] == recipe["deepspeed"] and ran["zero_stage"] == stage, (path, ran)
