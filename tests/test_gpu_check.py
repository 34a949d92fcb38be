"""benchmarks/gpu_check.py, the GPU acceptance script, in its CPU mode (the tiny model, seconds):
it runs where only torch, transformers, peft and accelerate are installed (the lent GPU machine),
proven by making the pipeline's other dependencies fail to import, and writes every measurement."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import load_gpu_check

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
ABSENT = ["datasets", "polars", "snakemake", "deepspeed", "jsonschema", "pandas"]

# Loaded at interpreter start (sitecustomize on PYTHONPATH): importing an absent package raises
# ModuleNotFoundError and importlib.util.find_spec says None, as on a machine without it.
GUARD = textwrap.dedent(
    f"""
    import importlib.abc, importlib.util, sys

    ABSENT = {ABSENT!r}

    def _absent(name):
        return name.split(".")[0] in ABSENT

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if _absent(name):
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None

    _find_spec = importlib.util.find_spec

    def find_spec(name, package=None):
        return None if _absent(name) else _find_spec(name, package)

    importlib.util.find_spec = find_spec
    sys.meta_path.insert(0, _Block())
    """
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    guard = tmp_path_factory.mktemp("guard")
    (guard / "sitecustomize.py").write_text(GUARD)
    out = tmp_path_factory.mktemp("out")
    env = {**os.environ, "PYTHONPATH": str(guard), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # the guard works: each absent package fails to import (those installed here included)
    probe = "\n".join(
        f"try:\n    import {name}\n    raise SystemExit('{name} imported')\nexcept ImportError:\n    pass"
        for name in ABSENT
    )
    check = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads((out / "gpu_check_cpu.json").read_text()), (out / "gpu_check_cpu.md").read_text(), proc.stdout


def test_runs_without_the_pipeline_only_dependencies_and_records_the_setup(run):
    data, md, stdout = run
    assert data["mode"] == "cpu" and data["errors"] == []
    assert set(data["parts"]) == {"train", "eval", "bf16_agreement"}
    assert all(not ({"skipped", "error"} & set(part)) for part in data["parts"].values())
    assert data["device"] and data["peak"]["peak_flops"] > 0  # CPU: a measured peak, so MFU is defined
    assert all(data["versions"][k] for k in ("torch", "transformers", "peft", "python"))
    assert data["model"]["shape"]["params"] > 0 and "--cpu" in data["command"]
    assert set(data["part_wall_s"]) == set(data["parts"]) and data["total_wall_s"] > 0
    for part in data["parts"]:
        assert f"[{part}] done in" in stdout  # elapsed seconds printed per part
    for heading in ("## 1. Fine-tuning throughput", "## 2. Evaluation throughput", "## 3. bf16 vs fp32 scoring"):
        assert heading in md


def test_train_counts_useful_tokens_and_reports_mfu(run):
    data, _, _ = run
    train = data["parts"]["train"]
    configs = train["configs"]
    layouts = {(c["method"], c["layout"]) for c in configs.values()}
    assert layouts == {("lora", "padded"), ("lora", "packed"), ("full", "padded"), ("full", "packed")}

    # the timed steps' examples, recomputed: every configuration counts exactly their tokens
    gpu_check = load_gpu_check()
    settings = gpu_check.CPU
    examples = gpu_check.train_examples(settings)
    expected = sum(len(f["input_ids"]) for f in examples[settings.batch * settings.warmup_steps :])
    for name, c in configs.items():
        assert c["useful_tokens"] == expected, name  # padding never counted, packed or padded
        assert c["positions"] >= c["useful_tokens"]
        assert c["tokens_per_s"] > 0 and 0 < c["mfu"] < 1, name
        assert math.isclose(c["tokens_per_s"], c["useful_tokens"] / c["seconds"], rel_tol=0.01), name
        assert c["losses_finite"] and all(math.isfinite(x) for x in c["losses"]), name
        assert len(c["losses"]) == settings.warmup_steps + settings.steps and c["timed_steps"] == settings.steps
        assert c["trainable_params"] > 0
    padded = configs["lora_padded"]
    assert padded["positions"] > padded["useful_tokens"]  # right padding is computed but not counted
    packed = configs[f"lora_packed_rows{settings.rows[0]}"]
    assert packed["positions"] < padded["positions"] and packed["tokens_per_s"] > 0
    assert configs["lora_padded"]["trainable_params"] < configs["full_padded"]["trainable_params"]
    # the same first batch on the same weights: packed rows (target-only loss) give the padded loss
    assert train["lora_first_loss_spread"] < 1e-2 and train["full_first_loss_spread"] < 1e-2


def test_eval_and_generation_throughput(run):
    data, _, _ = run
    ev = data["parts"]["eval"]
    for call in ("loglikelihoods", "option_loglikelihoods"):
        assert ev[call]["tokens"] > 0 and ev[call]["tokens_per_s"] > 0 and 0 < ev[call]["mfu"] < 1, call
        assert ev[call]["all_finite"], call
    gen = ev["generation"]
    assert gen["prompt_tokens"] > 0 and 0 < gen["generated_tokens"] <= gen["prompts"] * gen["max_new_tokens"]
    assert gen["prompt_tokens_per_s"] > 0 and gen["generated_tokens_per_s"] > 0 and gen["decode_tokens_per_s"] > 0
    assert 0 < gen["total"]["mfu"] < 1


def test_bf16_agreement_fields(run):
    data, _, _ = run
    a = data["parts"]["bf16_agreement"]
    for key in ("agreement", "disagreements", "max_abs_delta_loglik", "mean_abs_delta_loglik", "clear_picks"):
        assert key in a, key
    assert 0 <= a["agreement"] <= 1 and a["all_finite"]
    assert 0 <= a["mean_abs_delta_loglik"] <= a["max_abs_delta_loglik"] < 1
    # picks whose fp32 margin is over twice the largest bf16 error cannot flip
    assert a["clear_picks"] == 0 or a["clear_pick_agreement"] == 1.0
