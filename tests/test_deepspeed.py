"""DeepSpeed on CPU: the project's own launch + fine-tune entry point under torchrun, 2 processes.

Each run goes through `python -m ftgen launch --procs 2 -- finetune ...` exactly as the
fine-tune rule calls it, with the ZeRO JSONs shipped in config/deepspeed/, and must give a
model that a single process would have produced from the same batches (within tolerance).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO

deepspeed = pytest.importorskip("deepspeed", reason="DeepSpeed is part of the dev install (.[dev])")

from ftgen.modeling import load_model, load_tokenizer  # noqa: E402
from ftgen.prompts import encode_example  # noqa: E402
from test_model_train_eval import PP, examples, finetune_cmd, tokenized  # noqa: E402,F401  (fixtures)

RECIPE = {"learning_rate": 0.01, "epochs": 1, "per_device_batch_size": 4, "gradient_accumulation": 1,
          "bf16": False, "save_steps": 100, "logging_steps": 1, "size": 16, "seed": 3,
          "lr_scheduler": "constant", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}


@pytest.mark.parametrize("path", sorted((REPO / "config/deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_shipped_deepspeed_configs_are_valid(path):
    """DeepSpeed's own config class (pydantic, unknown keys rejected) accepts every shipped JSON,
    once the HF "auto" values are filled in the way the Trainer fills them."""
    from deepspeed.runtime.config import DeepSpeedConfig

    cfg = json.loads(path.read_text())
    filled = {"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 8,
              "gradient_clipping": 1.0}
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


def _run(tiny_model, tokenized, out: Path, recipe: dict, procs: int) -> dict:  # noqa: F811
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
           "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    proc = subprocess.run(finetune_cmd(tiny_model, tokenized, recipe, out, procs=procs, threads=2), env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
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
def single(tiny_model, tokenized, tmp_path_factory):  # noqa: F811
    """Reference: one process, no DeepSpeed, the same global batch (2 x 2 = 4)."""
    root = tmp_path_factory.mktemp("single")
    runs = {}
    for method in ("lora", "full"):
        recipe = RECIPE | {"method": method}
        runs[method] = _run(tiny_model, tokenized, root / method, recipe, procs=1), root / method
    return runs


@pytest.mark.parametrize(("stage", "method", "packing"), [
    (2, "lora", False), (2, "full", False), (3, "lora", False), (3, "full", False),
    (2, "lora", True), (3, "full", True),  # packed rows + target-only loss, scaled across the 2 ranks
])
def test_deepspeed_two_processes_match_single_process(tiny_model, tokenized, single, tmp_path, stage, method, packing):  # noqa: F811
    recipe = RECIPE | {"method": method, "per_device_batch_size": 2, "packing": packing,
                       "deepspeed": str(REPO / f"config/deepspeed/zero{stage}.json")}
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
