"""The S3FT tasks' metrics on real HumanEval and MathQA rows: unit tests run in the sandbox, and
final numbers compared by value."""

from __future__ import annotations


import polars as pl
import pytest
from conftest import REPO

from ftgen.study import Study, load_yaml
from ftgen.data import prepare_dataset
from ftgen.metrics import program_of, score


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from ftgen.assets import fetch_asset

    out = tmp_path_factory.mktemp("s3ft-data")
    cfg = load_yaml(REPO / "config/studies/smoke.yaml")
    cfg["datasets"] = {"humaneval": {"split": {"seed": 0, "test": 20, "dev": 0, "fewshot": 0, "train": 100}},
                       "mathqa_numeric": {"split": {"seed": 0, "test": 40, "dev": 0, "fewshot": 0, "train": 200}}}
    cfg["finetune"]["train_on"], cfg["finetune"]["sizes"] = ["humaneval"], [12]
    study = Study(cfg, source="t.yaml")
    paths = {}
    for name in cfg["datasets"]:
        spec = study.dataset_params(name)
        asset = study.asset_path(spec["source"]["asset"])
        fetch_asset(name=spec["source"]["asset"], spec=study.assets[spec["source"]["asset"]], asset=asset,
                    log=lambda *_: None)
        card = prepare_dataset(spec=spec, asset=str(asset), examples=str(out / f"{name}.parquet"),
                               card=str(out / f"{name}.card.json"), manifest=str(out / f"{name}.manifest.json"))
        paths[name] = (out / f"{name}.parquet", card)
    return paths


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail(datasets):
    path, card = datasets["humaneval"]
    assert card["rows_valid"] == 164
    rows = pl.read_parquet(path).head(6).to_dicts()
    inputs = [r["inputs"] for r in rows]
    gold = [r["references"][0] for r in rows]
    assert score(["pass_at_1"], gold, [[g] for g in gold], inputs=inputs)[0]["pass_at_1"] == 100.0
    broken = ["    return None\n"] * len(rows)
    assert score(["pass_at_1"], broken, [[g] for g in gold], inputs=inputs)[0]["pass_at_1"] == 0.0
    # an instruct model's answer: the whole function again, in a fenced block
    fenced = f"Here you go:\n```python\n{inputs[0]['prompt']}{gold[0]}```\nDone."
    assert f"def {inputs[0]['entry_point']}" in program_of(fenced, inputs[0])
    assert score(["pass_at_1"], [fenced], [[gold[0]]], inputs=inputs[:1])[0]["pass_at_1"] == 100.0


def test_mathqa_numeric_rows_and_the_value_check(datasets):
    path, card = datasets["mathqa_numeric"]
    assert card["rows_valid"] == 5060  # the rows of MathQA whose answer is a plain number
    rows = pl.read_parquet(path).head(5).to_dicts()
    refs = [r["references"] for r in rows]
    right = [f"Working... so the answer is {r[0]}." for r in refs]
    wrong = [f"The answer is {float(r[0]) + 1}" for r in refs]
    assert score(["math_match"], right, refs)[0]["math_match"] == 100.0
    assert score(["math_match"], wrong, refs)[0]["math_match"] == 0.0


def test_mbpp_rows_become_checkable_code_tasks(tmp_path):
    """MBPP's layout (saved with `datasets`, read back like the hub): canonical code passes its tests."""
    import datasets

    rows = [{"task_id": 11, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
             "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], "test_setup_code": "",
             "challenge_test_list": []},
            {"task_id": 12, "text": "Write a function to square a number.", "code": "def sq(x):\n    return x * x",
             "test_list": ["assert sq(3) == 9"], "test_setup_code": "", "challenge_test_list": []}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "mbpp"))
    params = {"name": "mbpp", "task": "code_completion", "task_type": "generation",
              "inputs": ["prompt", "test", "entry_point"], "labels": None,
              "source": {"adapter": "mbpp", "name": str(tmp_path / "mbpp"), "split": "train", "keep_whitespace": True},
              "split": {"seed": 0, "test": 2, "dev": 0, "fewshot": 0, "train": 0}, "asset": None}
    prepare_dataset(spec=params, examples=str(tmp_path / "m.parquet"), card=str(tmp_path / "c.json"),
                    manifest=str(tmp_path / "mm.json"))
    got = pl.read_parquet(tmp_path / "m.parquet").sort("id").to_dicts()
    assert got[0]["inputs"]["entry_point"] == "add" and "assert add(1, 2) == 3" in got[0]["inputs"]["prompt"]
    inputs, gold = [r["inputs"] for r in got], [r["references"][0] for r in got]
    fenced = [f"```python\n{g}\n```" for g in gold]  # an instruct model's answer
    assert score(["pass_at_1"], fenced, [[g] for g in gold], inputs=inputs)[0]["pass_at_1"] == 100.0
    wrong = ["```python\ndef add(a, b):\n    return a - b\n```", "```python\ndef sq(x):\n    return x\n```"]
    assert score(["pass_at_1"], wrong, [[g] for g in gold], inputs=inputs)[0]["pass_at_1"] == 0.0
