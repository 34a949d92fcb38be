"""Preemption: a fine-tune killed mid-way (SIGKILL, or SIGTERM as SLURM sends at a time limit)
resumes on rerun from its newest complete checkpoint and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from ftgen.evaluate import evaluate_cell
from test_model_train_eval import PP, examples, finetune_cmd, tokenized  # noqa: F401  (fixtures)

RECIPE = {"method": "lora", "learning_rate": 0.01, "epochs": 1, "max_steps": 120, "per_device_batch_size": 4,
          "bf16": False, "save_steps": 10, "logging_steps": 10, "size": 16, "seed": 5,
          "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}}


def _cmd(tiny_model, tokenized, out: Path) -> list[str]:  # noqa: F811
    return finetune_cmd(tiny_model, tokenized, RECIPE, out)


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def _complete(ckpt: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*") if (p / "trainer_state.json").exists())


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tokenized, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("ref") / "model"
    subprocess.run(_cmd(tiny_model, tokenized, out), env=_env(), check=True, capture_output=True, cwd=REPO)
    return out


def _scores(model_dir, tiny_model, examples, tmp):  # noqa: F811
    params = {"prompt": PP, "format": 0, "shots": 0, "metrics": ["accuracy", "macro_f1"], "batch_size": 4,
              "limit": None, "seed": 0, "bf16": False}
    res = evaluate_cell(model=str(model_dir), base=str(tiny_model), examples=str(examples), spec=params,
                        predictions=str(tmp / "p.jsonl"), scores=str(tmp / "s.json"), cell=["tiny", "x", "d", "0", "0"])
    return res["scores"], [json.loads(line)["loglik"] for line in open(tmp / "p.jsonl")]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_finetune_resumes_to_the_same_model(tiny_model, tokenized, examples, uninterrupted, tmp_path, sig):  # noqa: F811
    out = tmp_path / "model"
    ckpt = tmp_path / "ckpt_model"
    proc = subprocess.Popen(_cmd(tiny_model, tokenized, out), env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not [s for s in _complete(ckpt) if s >= 30] and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode == -sig, f"training was not killed mid-way (rc {proc.returncode}): {proc.stderr.read()[-2000:]}"
    steps = _complete(ckpt)
    assert not out.exists() and steps and steps[-1] < RECIPE["max_steps"]

    # a checkpoint cut short while being written (no trainer_state.json) must be ignored
    half = ckpt / f"checkpoint-{steps[-1] + 5}"
    shutil.copytree(ckpt / f"checkpoint-{steps[-1]}", half)
    (half / "trainer_state.json").unlink()

    rerun = subprocess.run(_cmd(tiny_model, tokenized, out), env=_env(), capture_output=True, text=True, cwd=REPO)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {ckpt / f'checkpoint-{steps[-1]}'}" in rerun.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from"].endswith(f"checkpoint-{steps[-1]}") and manifest["global_steps"] == RECIPE["max_steps"]
    # the loss of the whole run, not of the steps after the resume
    ref_manifest = json.loads((uninterrupted / "manifest.json").read_text())
    assert manifest["train_loss_steps"] == ref_manifest["train_loss_steps"] == [1, RECIPE["max_steps"]]
    assert manifest["train_loss"] == pytest.approx(ref_manifest["train_loss"], abs=2e-4)
    assert ref_manifest["train_loss"] > 0.1

    a, b = load_file(out / "adapter_model.safetensors"), load_file(uninterrupted / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    (tmp_path / "e1").mkdir(), (tmp_path / "e2").mkdir()
    s1, ll1 = _scores(out, tiny_model, examples, tmp_path / "e1")
    s2, ll2 = _scores(uninterrupted, tiny_model, examples, tmp_path / "e2")
    assert s1 == s2
    assert max(abs(r1[k] - r2[k]) for r1, r2 in zip(ll1, ll2) for k in r1) < 1e-4
