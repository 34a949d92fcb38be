"""Fine-tuning on the tiny random-init Llama (real HF + peft): the same seed gives the same weights,
a killed run resumes from its checkpoints, packed rows train like padded batches, DeepSpeed on
two CPU processes matches one process, and the optimizer schedule follows the global batch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import DataCollatorForSeq2Seq

from ftgen import compute
from ftgen.modeling import load_model, load_tokenizer
from ftgen.prompts import encode_example
from ftgen.tokenized import tokenize_dataset
from ftgen.train import PackingCollator, TargetLogitsTrainer, finetune, schedule
from helpers import PP, REPO, eval_sentiment, eval_spec, run_cell

# ----------------------------------------------------------------------------- LoRA fine-tuning
RECIPE = {
    "method": "lora",
    "learning_rate": 0.01,
    "epochs": 1,
    "per_device_batch_size": 4,
    "bf16": False,
    "save_steps": 2,
    "logging_steps": 1,
    "size": 12,
    "seed": 7,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
}


def finetune_cmd(tiny_model, tokenized, recipe: dict, out, procs: int = 0, threads: int = 1) -> list[str]:
    """The fine-tune step exactly as the rule runs it: through `ftgen launch`, checkpoints beside `out`."""
    return [
        sys.executable,
        "-m",
        "ftgen",
        "launch",
        "--procs",
        str(procs),
        "--",
        "finetune",
        "--model",
        str(tiny_model),
        "--tokenized",
        str(tokenized),
        "--recipe",
        json.dumps(recipe),
        "--finetuned",
        str(out),
        "--checkpoints",
        str(out.parent / f"ckpt_{out.name}"),
        "--threads",
        str(threads),
    ]


def _train(tiny_model, examples, tmp_path, name, recipe=RECIPE):
    tok_dir = tmp_path / "tok"
    if not tok_dir.exists():
        tokenize_dataset(
            model=str(tiny_model),
            examples=str(examples),
            spec={"prompt": PP, "variant": "sft", "format": 0},
            tokenized=str(tok_dir),
        )
    out = tmp_path / name
    finetune(
        model=str(tiny_model),
        tokenized=str(tok_dir),
        recipe=recipe,
        finetuned=str(out),
        checkpoints=str(tmp_path / f"ckpt_{name}"),
        threads=1,
    )
    return out


def test_same_seed_gives_identical_weights_and_scores(tiny_model, examples, tmp_path):
    a = _train(tiny_model, examples, tmp_path, "a")
    b = _train(tiny_model, examples, tmp_path, "b")
    wa, wb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(v.abs().sum() > 0 for k, v in wa.items() if "lora_B" in k), "LoRA did not train"
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["tokens_per_s"] > 0 and manifest["input_sha256"]["tokenized"]
    comp, config = manifest["compute"], json.loads((tiny_model / "config.json").read_text())
    assert comp["model_shape"] == compute.model_shape(config).as_dict()
    assert comp["flops_per_token_formula"].startswith("4N")  # LoRA: no weight gradients for frozen weights
    assert comp["flops_per_token"] > 4 * comp["model_shape"]["matmul_params"]  # + attention
    assert comp["achieved_tflops"] == pytest.approx(comp["tokens_per_s"] * comp["flops_per_token"] / 1e12, rel=0.01)
    assert 0 < comp["mfu"] < 1 and comp["devices"] == 1
    ra, pa = eval_sentiment(a, tiny_model, examples, tmp_path, "ea")
    rb, pb = eval_sentiment(b, tiny_model, examples, tmp_path, "eb")
    assert ra["scores"] == rb["scores"] and pa == pb
    # scores.json agrees with the per-example predictions it was computed from
    acc = 100 * sum(p["prediction"] == p["references"][0] for p in pa) / len(pa)
    assert ra["scores"]["accuracy"] == pytest.approx(acc)
    assert ra["demonstrations"] and ra["n"] == 8
    # a different seed trains different weights
    c = _train(tiny_model, examples, tmp_path, "c", {**RECIPE, "seed": 8})
    wc = load_file(c / "adapter_model.safetensors")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_from_checkpoint_after_kill(tiny_model, examples, tmp_path):
    """A run that left checkpoints (killed job) resumes from the last one on rerun."""
    recipe = {**RECIPE, "epochs": 2}
    out = _train(tiny_model, examples, tmp_path, "r", recipe)
    import shutil

    shutil.rmtree(out)  # the declared output is gone, checkpoints remain
    again = _train(tiny_model, examples, tmp_path, "r", recipe)
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["resumed_from"] and "checkpoint-" in manifest["resumed_from"]
    # a changed recipe must not resume from the old checkpoints
    other = _train(tiny_model, examples, tmp_path, "r", {**recipe, "learning_rate": 0.02})
    assert json.loads((other / "manifest.json").read_text())["resumed_from"] is None


# ----------------------------------------------------------------------------- packed training
# Packed (padding-free) training: examples in one row must not see each other, and the
# target-only loss must equal the model's own loss on the same padded batch.
ROWS = [
    {"input_ids": [5, 9, 14, 22, 31, 7], "labels": [-100, -100, -100, 22, 31, 7]},
    {"input_ids": [40, 3, 18], "labels": [-100, 3, 18]},
    {"input_ids": [11, 12, 13, 14, 15, 16, 17, 2], "labels": [-100, -100, -100, -100, -100, 16, 17, 2]},
]


def test_packed_examples_do_not_see_each_other(tiny_model):
    model = load_model(tiny_model)
    packed = PackingCollator(pad_id=0)(ROWS)  # one row, longest example first
    order = sorted(ROWS, key=lambda r: -len(r["input_ids"]))
    assert packed["input_ids"].shape == (1, 17)
    with torch.no_grad():
        # use_cache=False as in training (finetune sets it): with a cache transformers does not isolate
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        start = 0
        for row in order:
            alone = model(input_ids=torch.tensor([row["input_ids"]])).logits[0]
            n = len(row["input_ids"])
            torch.testing.assert_close(logits[start : start + n], alone, rtol=1e-4, atol=1e-5)
            start += n
        # without restarting positions the model treats the row as one sequence: the test can fail
        leaky = model(input_ids=packed["input_ids"], use_cache=False).logits[0]
        assert not torch.allclose(leaky[8:], logits[8:], atol=1e-4)


def test_rows_are_bounded_and_padded_apart():
    batch = PackingCollator(pad_id=0, row_tokens=10)(ROWS)  # 8 | 6 + 3 -> two rows of width 9
    assert batch["input_ids"].shape == (2, 9)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 0], [0, 1, 2, 3, 4, 5, 0, 1, 2]]
    assert batch["labels"][0].tolist() == [-100, -100, -100, -100, -100, 16, 17, 2, -100]
    assert batch["labels"][1].tolist() == [-100, -100, -100, 22, 31, 7, -100, 3, 18]


class _Args:
    average_tokens_across_devices = False


def test_target_only_loss_equals_model_loss_on_padded_batch(tiny_model):
    model = load_model(tiny_model)
    tok = load_tokenizer(tiny_model, padding_side="right")
    padded = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)([dict(r) for r in ROWS])
    packed = PackingCollator(tok.pad_token_id)(ROWS)
    rows = PackingCollator(tok.pad_token_id, row_tokens=10)(ROWS)
    n_targets = sum(sum(t != -100 for t in r["labels"][1:]) for r in ROWS)
    trainer = TargetLogitsTrainer()
    trainer.args = _Args()
    with torch.no_grad():
        reference = model(**padded).loss  # the model's mean over target tokens
        ours = trainer.compute_loss(model, dict(packed), num_items_in_batch=torch.tensor(n_targets))
        ours_no_count = trainer.compute_loss(model, dict(packed))
        in_rows = trainer.compute_loss(model, dict(rows), num_items_in_batch=torch.tensor(n_targets))
    for loss in (ours, ours_no_count, in_rows):
        torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)


def test_packed_training_learns_like_padded_training(tiny_model, examples, tmp_path):
    """Through `finetune` (Trainer, loss normalisation by `num_items_in_batch`): same examples and
    steps, the packed runs end at the padded run's loss up to float noise (5e-7 measured). Attention
    isolation is checked by the logits and loss tests above (the random tiny model's loss barely
    depends on attention)."""
    import json

    padded = _train(tiny_model, examples, tmp_path, "padded")
    for name, extra in {
        "packed": {},
        "rows": {"packing_row_tokens": 32},
        "all_logits": {"target_logits_only": False},
    }.items():
        packed = _train(tiny_model, examples, tmp_path, name, {**RECIPE, "packing": True, **extra})
        lp, lk = (json.loads((d / "manifest.json").read_text())["train_loss"] for d in (padded, packed))
        assert abs(lp - lk) < 1e-4, (name, lp, lk)


def test_bf16_frozen_weights_keep_fp32_adapters(tiny_model, examples, tmp_path):
    """LoRA with bf16 on: base weights stored in bf16, the trained adapter saved in fp32."""
    import json

    from safetensors.torch import load_file

    recipe = {**RECIPE, "bf16": True, "packing": True, "bf16_frozen_weights": True}
    out = _train(tiny_model, examples, tmp_path, "frozen_bf16", recipe)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["frozen_weights_bf16"] is True and manifest["bf16"] is True
    weights = load_file(out / "adapter_model.safetensors")
    assert weights and all(w.dtype == torch.float32 for w in weights.values())
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k), "LoRA did not train"


# ----------------------------------------------------------------------------- DeepSpeed
# DeepSpeed on CPU: the project's own launch + fine-tune entry point under torchrun, 2 processes.
#
# Each run goes through `python -m ftgen launch --procs 2 -- finetune ...` exactly as the
# fine-tune rule calls it, with the ZeRO JSONs shipped in config/deepspeed/, and must give a
# model that a single process would have produced from the same batches (within tolerance).
DS_RECIPE = {
    "learning_rate": 0.01,
    "epochs": 1,
    "per_device_batch_size": 4,
    "gradient_accumulation": 1,
    "bf16": False,
    "save_steps": 100,
    "logging_steps": 1,
    "size": 16,
    "seed": 3,
    "lr_scheduler": "constant",
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
}


@pytest.fixture(scope="module")
def deepspeed():
    """DeepSpeed, part of the dev install (.[dev]): the tests that use it are skipped without it."""
    return pytest.importorskip("deepspeed", reason="DeepSpeed is part of the dev install (.[dev])")


@pytest.mark.usefixtures("deepspeed")
@pytest.mark.parametrize("path", sorted((REPO / "config/deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_shipped_deepspeed_configs_are_valid(path):
    """DeepSpeed's own config class (pydantic, unknown keys rejected) accepts every shipped JSON,
    once the HF "auto" values are filled in the way the Trainer fills them."""
    from deepspeed.runtime.config import DeepSpeedConfig

    cfg = json.loads(path.read_text())
    filled = {
        "train_batch_size": 16,
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 8,
        "gradient_clipping": 1.0,
    }
    cfg.update({k: v for k, v in filled.items() if cfg.get(k) == "auto"})
    cfg["bf16"] = {"enabled": True}
    zero = cfg["zero_optimization"]
    for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"):
        if zero.get(key) == "auto":
            zero[key] = 1_000_000
    parsed = DeepSpeedConfig(cfg, mpu=None)
    assert parsed.zero_optimization_stage == zero["stage"] and parsed.bfloat16_config.enabled
    if "offload_param" in zero:
        assert parsed.zero_config.offload_param.device == parsed.zero_config.offload_optimizer.device == "cpu"
    # the check has teeth: a misspelt ZeRO key is refused
    with pytest.raises(Exception, match="overlap_comms"):
        DeepSpeedConfig(cfg | {"zero_optimization": zero | {"overlap_comms": True}}, mpu=None)


def _run(tiny_model, tokenized, out: Path, recipe: dict, procs: int) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
        "MASTER_PORT": str(29500 + os.getpid() % 1000),
    }
    proc = subprocess.run(
        finetune_cmd(tiny_model, tokenized, recipe, out, procs=procs, threads=2),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads((out / "manifest.json").read_text()) | {"log": proc.stderr}


def _probe_logits(model_dir: Path, tiny_model: Path) -> torch.Tensor:
    tok = load_tokenizer(tiny_model)
    model = load_model(model_dir, base_dir=tiny_model)
    texts = ["item 1 was good", "item 7 was awful", "the film was great"]
    ids = [encode_example(tok, PP, 0, {"inputs": {"text": t}}, [], None, budget=64).prompt_ids for t in texts]
    with torch.no_grad():
        return torch.cat([model(torch.tensor([i])).logits[0, -1:] for i in ids])


@pytest.fixture(scope="module")
def single(tiny_model, tokenized, tmp_path_factory):
    """Reference: one process, no DeepSpeed, the same global batch (2 x 2 = 4)."""
    root = tmp_path_factory.mktemp("single")
    runs = {}
    for method in ("lora", "full"):
        recipe = DS_RECIPE | {"method": method}
        runs[method] = _run(tiny_model, tokenized, root / method, recipe, procs=1), root / method
    return runs


@pytest.mark.usefixtures("deepspeed")
@pytest.mark.parametrize(
    ("stage", "method", "packing"),
    [
        (2, "lora", False),
        (2, "full", False),
        (3, "lora", False),
        (3, "full", False),
        (2, "lora", True),
        (3, "full", True),  # packed rows + target-only loss, scaled across the 2 ranks
    ],
)
def test_deepspeed_two_processes_match_single_process(tiny_model, tokenized, single, tmp_path, stage, method, packing):
    recipe = DS_RECIPE | {
        "method": method,
        "per_device_batch_size": 2,
        "packing": packing,
        "deepspeed": str(REPO / f"config/deepspeed/zero{stage}.json"),
    }
    out = tmp_path / f"z{stage}_{method}_{packing}"
    got = _run(tiny_model, tokenized, out, recipe, procs=2)
    assert "torch.distributed.run" in got["log"] and "--nproc_per_node 2" in got["log"]
    dist = got["distributed"]
    assert dist["world_size"] == 2 and dist["zero_stage"] == stage and dist["backend"] == "gloo", dist
    ref_manifest, ref_dir = single[method]
    assert ref_manifest["distributed"]["world_size"] == 1 and ref_manifest["global_steps"] == got["global_steps"] == 4

    # a consolidated artifact: a LoRA adapter, or one full safetensors model, that reloads
    files = {p.name for p in out.iterdir()}
    assert ("adapter_model.safetensors" in files) if method == "lora" else ("model.safetensors" in files), files
    base, ref, ds = (_probe_logits(d, tiny_model) for d in (tiny_model, ref_dir, out))
    moved = (ref - base).abs().max().item()
    assert moved > 1e-3, "training did not change the model: the comparison would be vacuous"
    assert (ds - ref).abs().max().item() < 0.05 * moved, (stage, method, (ds - ref).abs().max().item(), moved)


# ----------------------------------------------------------------------------- preemption
# Preemption: a fine-tune killed mid-way (SIGKILL, or SIGTERM as SLURM sends at a time limit)
# resumes on rerun from its newest complete checkpoint and ends where an uninterrupted run ends.
RESUME_RECIPE = {
    "method": "lora",
    "learning_rate": 0.01,
    "epochs": 1,
    "max_steps": 120,
    "per_device_batch_size": 4,
    "bf16": False,
    "save_steps": 10,
    "logging_steps": 10,
    "size": 16,
    "seed": 5,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
}


def _cmd(tiny_model, tokenized, out: Path) -> list[str]:
    return finetune_cmd(tiny_model, tokenized, RESUME_RECIPE, out)


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def _complete(ckpt: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*") if (p / "trainer_state.json").exists())


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tokenized, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "model"
    subprocess.run(_cmd(tiny_model, tokenized, out), env=_env(), check=True, capture_output=True, cwd=REPO)
    return out


def _scores(model_dir, tiny_model, examples, tmp):
    spec = eval_spec(PP, ["accuracy", "macro_f1"])
    res, preds = run_cell(model_dir, examples, spec, tmp, base=tiny_model, cell=("tiny", "x", "d", "0", "0"))
    return res["scores"], [p["loglik"] for p in preds]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_finetune_resumes_to_the_same_model(tiny_model, tokenized, examples, uninterrupted, tmp_path, sig):
    out = tmp_path / "model"
    ckpt = tmp_path / "ckpt_model"
    proc = subprocess.Popen(
        _cmd(tiny_model, tokenized, out),
        env=_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not [s for s in _complete(ckpt) if s >= 30] and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode == -sig, (
        f"training was not killed mid-way (rc {proc.returncode}): {proc.stderr.read()[-2000:]}"
    )
    steps = _complete(ckpt)
    assert not out.exists() and steps and steps[-1] < RESUME_RECIPE["max_steps"]

    # a checkpoint cut short while being written (no trainer_state.json) must be ignored
    half = ckpt / f"checkpoint-{steps[-1] + 5}"
    shutil.copytree(ckpt / f"checkpoint-{steps[-1]}", half)
    (half / "trainer_state.json").unlink()

    rerun = subprocess.run(_cmd(tiny_model, tokenized, out), env=_env(), capture_output=True, text=True, cwd=REPO)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {ckpt / f'checkpoint-{steps[-1]}'}" in rerun.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["resumed_from"].endswith(f"checkpoint-{steps[-1]}")
        and manifest["global_steps"] == RESUME_RECIPE["max_steps"]
    )
    # the loss of the whole run, not of the steps after the resume
    ref_manifest = json.loads((uninterrupted / "manifest.json").read_text())
    assert manifest["train_loss_steps"] == ref_manifest["train_loss_steps"] == [1, RESUME_RECIPE["max_steps"]]
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


# ----------------------------------------------------------------------------- schedule
# The optimizer schedule (steps, warm-up) comes from the global batch, not one rank's view.
def test_barnett_schedule_on_eight_gpus():
    """barnett2024 at n=200: 2 per device x 2 accumulation x 8 GPUs = 32 per step, 7 steps an
    epoch, 21 in 3 epochs; a 3 % warm-up is 1 step (one rank's view made it 4 of 21)."""
    recipe = {"per_device_batch_size": 2, "gradient_accumulation": 2, "epochs": 3, "warmup_ratio": 0.03}
    plan = schedule(recipe, 200, world_size=8)
    assert plan["global_batch"] == 32 and plan["steps_per_epoch"] == 7 and plan["total_steps"] == 21
    assert plan["warmup_steps"] == 1
    assert schedule(recipe, 200, world_size=1)["total_steps"] == 150  # one GPU: 4 per step


@pytest.mark.parametrize(
    ("n", "per_device", "accumulation", "world"),
    [
        (16, 4, 1, 1),
        (16, 2, 1, 2),
        (17, 2, 2, 2),
        (200, 2, 2, 8),
        (5, 4, 1, 4),
        (1000, 1, 8, 8),
    ],
)
def test_schedule_depends_on_the_global_batch(n, per_device, accumulation, world):
    recipe = {
        "per_device_batch_size": per_device,
        "gradient_accumulation": accumulation,
        "epochs": 2,
        "warmup_ratio": 0.1,
    }
    plan = schedule(recipe, n, world)
    batches = -(-n // per_device)  # every batch of the epoch, whichever rank draws it
    rounds = -(-batches // world)
    assert plan["steps_per_epoch"] == max(1, -(-rounds // accumulation))
    assert plan["total_steps"] == 2 * plan["steps_per_epoch"]
    assert plan["warmup_steps"] == -(-plan["total_steps"] // 10)


def _lrs(out) -> list[float]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [r["learning_rate"] for r in rows if "learning_rate" in r]


@pytest.mark.usefixtures("deepspeed")
def test_two_processes_follow_the_single_process_schedule(tiny_model, tokenized, tmp_path):
    """2 ranks x 2 per device = 1 rank x 4: the same number of steps and the same learning rate at
    every step (warm-up over a quarter of the run, then linear decay)."""
    recipe = DS_RECIPE | {"method": "lora", "epochs": 2, "warmup_ratio": 0.25, "lr_scheduler": "linear"}
    one = _run(tiny_model, tokenized, tmp_path / "one", recipe, procs=1)
    two = _run(
        tiny_model,
        tokenized,
        tmp_path / "two",
        recipe | {"per_device_batch_size": 2, "deepspeed": str(REPO / "config/deepspeed/zero2.json")},
        procs=2,
    )
    assert one["global_steps"] == two["global_steps"] == 8
    for got in (one, two):
        plan = got["schedule"]
        assert plan["total_steps"] == plan["trainer_max_steps"] == 8 and plan["warmup_steps"] == 2, plan
    assert two["schedule"]["world_size"] == 2 and two["schedule"]["global_batch"] == 4
    assert _lrs(tmp_path / "one") == pytest.approx(_lrs(tmp_path / "two")) and len(_lrs(tmp_path / "one")) == 8


def test_run_loss_weights_logged_intervals_by_their_steps():
    from ftgen.train import run_loss

    log = [
        {"loss": 2.0, "step": 10},
        {"loss": 1.0, "step": 20},
        {"eval": 1, "step": 20},
        {"loss": 4.0, "step": 25},
        {"train_loss": 0.0, "step": 25},
    ]
    assert run_loss(log) == (pytest.approx((20 + 10 + 20) / 25), 25)
    assert run_loss([]) == (None, 0)
