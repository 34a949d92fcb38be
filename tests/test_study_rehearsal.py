"""The rehearsal switch (ftgen.study.rehearsal) on the GPU study configs: the same study, thinned
and shrunk, never missing a dataset, task, variant kind, model or rule. (Running it:
tests/workflow/test_rehearsal.py, marked `rehearsal`.)"""

from __future__ import annotations

import re

import pytest

from ftgen.study import Study, load_yaml
from ftgen.study.rehearsal import HUB_ADAPTERS, REHEARSAL_SIZES, hub_fixture
from helpers import REPO

GPU_STUDIES = ["yang2024", "barnett2024", "gupta2025"]


def studies(name: str) -> tuple[Study, Study]:
    config = load_yaml(REPO / "config" / "studies" / f"{name}.yaml")
    return Study(config), Study({**config, "rehearsal": "true"})  # as `--config rehearsal=true` passes it


def kinds(study: Study, dataset: str) -> set[str]:
    return {re.sub(r"-k\d+$", "", v) for v in study.variants_for(dataset)}


@pytest.mark.parametrize("name", GPU_STUDIES)
def test_rehearsal_keeps_every_dataset_task_variant_kind_and_model(name):
    real, rehearsed = studies(name)
    assert set(rehearsed.datasets) == set(real.datasets) and rehearsed.study_tasks == real.study_tasks
    assert rehearsed.model_names == real.model_names and rehearsed.eval_datasets == real.eval_datasets
    for dataset in real.finetune["train_on"]:
        assert kinds(rehearsed, dataset) == kinds(real, dataset)
    assert {c.dataset for c in rehearsed.eval_cells} == {c.dataset for c in real.eval_cells}
    assert len(rehearsed.eval_cells) <= len(real.eval_cells)
    if name == "yang2024":  # 6,624 cells: formats, shots, sizes and the scope thinned
        assert len(rehearsed.eval_cells) < len(real.eval_cells) / 50
    assert rehearsed.results_dir == real.results_dir.parent / "rehearsal" / name


@pytest.mark.parametrize("name", GPU_STUDIES)
def test_rehearsal_reads_fixtures_and_tiny_models_of_each_family(name):
    real, rehearsed = studies(name)
    for dataset, spec in real.datasets.items():
        source, shrunk = spec["source"], rehearsed.datasets[dataset]
        if source["adapter"] in HUB_ADAPTERS:
            assert shrunk["source"]["name"] == str(hub_fixture(source["name"]))
            assert {k: v for k, v in shrunk["source"].items() if k != "name"} == {
                k: v for k, v in source.items() if k != "name"
            }  # config, revision, data_dir, split and columns as written
        for key in ("test", "dev", "train"):
            assert shrunk["split"].get(key, 0) <= REHEARSAL_SIZES[key]
    for model, spec in real.models.items():
        stand_in = rehearsed.models[model]
        assert stand_in["source"] == "tiny_random"
        family = stand_in["tiny"]["family"]
        assert (
            family in spec["name"].lower()
            or (family == "llama2" and "llama" in spec["name"].lower())
            or (spec["source"] == "api")
        )
    assert rehearsed.finetune["recipe"]["deepspeed"] == real.finetune["recipe"]["deepspeed"]


@pytest.mark.parametrize("name", GPU_STUDIES)
def test_rehearsal_plans_every_rule_of_the_study(name, fresh_plan):
    args = ("--configfile", f"config/studies/{name}.yaml")
    real = fresh_plan(*args)
    rehearsed = fresh_plan(*args, "--config", "rehearsal=true")
    assert set(rehearsed) == set(real), set(real) ^ set(rehearsed)


def test_a_rehearsal_builds_bigbench_from_its_fixture_and_pins_it(tmp_path):
    """BIG-bench's sdist (358 MB) is a built fixture in a rehearsal: same member paths, read by
    the same adapters, pinned by the sha256 of a build that is byte-identical every time."""
    from ftgen.assets import fetch_asset, fixture_archive, member_path
    from ftgen.data import BIGBENCH_ROOT, read_bigbench

    real, rehearsed = studies("gupta2025")
    spec = rehearsed.assets["bigbench"]
    assert real.assets["bigbench"]["filename"] == "bigbench-1.0.0.tar.gz" and "fixture" not in real.assets["bigbench"]
    assert spec["filename"] == "bigbench-1.0.0.fixture.tar"
    assert fixture_archive(spec["fixture"]) == fixture_archive(spec["fixture"])
    asset = fetch_asset(name="bigbench", spec=spec, asset=str(tmp_path / spec["filename"]), log=lambda *_: None)
    assert member_path(asset, f"{BIGBENCH_ROOT}/misconceptions/task.json").exists()
    source = rehearsed.datasets["misconceptions"]["source"]
    rows = [row for _, row in read_bigbench({"file": "task.json", **source}, asset, ["statement"])]
    assert len(rows) >= 16 and {r["label"] for r in rows} == {"T", "F"}
    assert rehearsed.asset_fixture(spec["filename"]) and not real.asset_fixture(real.assets["bigbench"]["filename"])
