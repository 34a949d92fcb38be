"""The optimizer schedule (steps, warm-up) comes from the global batch, not one rank's view."""

from __future__ import annotations

import json

import pytest

from ftgen.train import schedule

deepspeed = pytest.importorskip("deepspeed", reason="DeepSpeed is part of the dev install (.[dev])")

from conftest import REPO  # noqa: E402
from test_deepspeed import RECIPE, _run  # noqa: E402
from test_model_train_eval import examples, tokenized  # noqa: E402,F401  (fixtures)


def test_barnett_schedule_on_eight_gpus():
    """barnett2024 at n=200: 2 per device x 2 accumulation x 8 GPUs = 32 per step, 7 steps an
    epoch, 21 in 3 epochs; a 3 % warm-up is 1 step (one rank's view made it 4 of 21)."""
    recipe = {"per_device_batch_size": 2, "gradient_accumulation": 2, "epochs": 3, "warmup_ratio": 0.03}
    plan = schedule(recipe, 200, world_size=8)
    assert plan["global_batch"] == 32 and plan["steps_per_epoch"] == 7 and plan["total_steps"] == 21
    assert plan["warmup_steps"] == 1
    assert schedule(recipe, 200, world_size=1)["total_steps"] == 150  # one GPU: 4 per step


@pytest.mark.parametrize(("n", "per_device", "accumulation", "world"), [
    (16, 4, 1, 1), (16, 2, 1, 2), (17, 2, 2, 2), (200, 2, 2, 8), (5, 4, 1, 4), (1000, 1, 8, 8),
])
def test_schedule_depends_on_the_global_batch(n, per_device, accumulation, world):
    recipe = {"per_device_batch_size": per_device, "gradient_accumulation": accumulation, "epochs": 2,
              "warmup_ratio": 0.1}
    plan = schedule(recipe, n, world)
    batches = -(-n // per_device)  # every batch of the epoch, whichever rank draws it
    rounds = -(-batches // world)
    assert plan["steps_per_epoch"] == max(1, -(-rounds // accumulation))
    assert plan["total_steps"] == 2 * plan["steps_per_epoch"]
    assert plan["warmup_steps"] == -(-plan["total_steps"] // 10)


def _lrs(out) -> list[float]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [r["learning_rate"] for r in rows if "learning_rate" in r]


def test_two_processes_follow_the_single_process_schedule(tiny_model, tokenized, tmp_path):  # noqa: F811
    """2 ranks x 2 per device = 1 rank x 4: the same number of steps and the same learning rate at
    every step (warm-up over a quarter of the run, then linear decay)."""
    recipe = RECIPE | {"method": "lora", "epochs": 2, "warmup_ratio": 0.25, "lr_scheduler": "linear"}
    one = _run(tiny_model, tokenized, tmp_path / "one", recipe, procs=1)
    two = _run(tiny_model, tokenized, tmp_path / "two", recipe | {
        "per_device_batch_size": 2, "deepspeed": str(REPO / "config/deepspeed/zero2.json")}, procs=2)
    assert one["global_steps"] == two["global_steps"] == 8
    for got in (one, two):
        plan = got["schedule"]
        assert plan["total_steps"] == plan["trainer_max_steps"] == 8 and plan["warmup_steps"] == 2, plan
    assert two["schedule"]["world_size"] == 2 and two["schedule"]["global_batch"] == 4
    assert _lrs(tmp_path / "one") == pytest.approx(_lrs(tmp_path / "two")) and len(_lrs(tmp_path / "one")) == 8


def test_run_loss_weights_logged_intervals_by_their_steps():
    from ftgen.train import run_loss

    log = [{"loss": 2.0, "step": 10}, {"loss": 1.0, "step": 20}, {"eval": 1, "step": 20}, {"loss": 4.0, "step": 25},
           {"train_loss": 0.0, "step": 25}]
    assert run_loss(log) == (pytest.approx((20 + 10 + 20) / 25), 25)
    assert run_loss([]) == (None, 0)
