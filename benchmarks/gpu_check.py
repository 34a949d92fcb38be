"""GPU acceptance check: fine-tune and evaluation throughput, MFU and bf16 numerics of a ~1B Llama.

    python benchmarks/gpu_check.py          # GPU mode: needs CUDA; ~3 min on one H100/H200, budget 420 s
    python benchmarks/gpu_check.py --cpu    # the same code on the tiny model, seconds (run by the tests)

Options: `--out DIR` (default benchmarks/out; GPU mode writes gpu_check_<device>.{json,md}, e.g.
gpu_check_nvidia_h200, CPU mode gpu_check_cpu.{json,md}), `--budget-s S` (default 420 GPU, 120 CPU).

Runs where only PyTorch, transformers, peft and accelerate are installed and nothing can be
downloaded (the lent GPU machine): the model is a LlamaConfig of TinyLlama-1.1B's shape (hidden
2048, intermediate 5632, 22 layers, 32 heads, 4 KV heads, vocabulary 32000, untied head) built on
the device with random weights, the tokenizer a byte-level one (256 byte symbols + synthetic words
up to 32000 ids) built in memory, and the workload random token ids with a fixed seed. From the
repository's root on that machine (its working tree is copied there):

    python benchmarks/gpu_check.py

It imports the project's own code from src/ (ftgen.compute, ftgen.train, ftgen.generation: torch,
transformers, peft, PyYAML and tqdm only) and never datasets, polars, pandas, snakemake, deepspeed
or jsonschema; tests/test_gpu_check.py runs the CPU mode with those imports made to fail.

What it measures (GPU mode in brackets; CPU mode: hidden 64, 2 layers, vocabulary 512, lengths
16..128, fewer steps). Example lengths are drawn log-uniformly [64..1024 tokens] with a fixed seed,
the last 10 % of each example's tokens are its targets.

1. train: {LoRA (r 16, alpha 32, dropout 0.05 on q_proj, k_proj, v_proj, o_proj; frozen base
   weights in bf16, adapters fp32), full fine-tuning (fp32 master weights)} x {padded, packed} with
   bf16 autocast (where `bf16: auto` would use it: every bf16 GPU; a CPU only if its bf16 matmuls
   are measured faster than fp32), AdamW (fused), gradient clipping at 1.0, [8] examples per optimizer step, [3]
   warm-up steps then [10] timed steps on the same batches for every configuration. `padded`: right-
   padded to the batch's longest, attention mask, the model's own loss (vocabulary logits at every
   position: HF Trainer with DataCollatorForSeq2Seq). `packed`: ftgen.train.PackingCollator rows
   of at most [2048] tokens (and [256], the studies' packing_row_tokens) with positions restarting
   per example, loss by ftgen.train.TargetLogitsTrainer.compute_loss (logits at target positions
   only), sdpa; and with flash_attention_2 (varlen) when `flash_attn` imports. Useful tokens/s
   count the examples' tokens only (no padding); MFU by ftgen.compute (4N or 6N + attention, N
   from the config, context = the mean example length) against the datasheet bf16 peak (CPU: a
   measured matmul peak); peak memory from torch.cuda.max_memory_allocated; every loss finite. The
   loop is this script's own (no HF Trainer, accelerate or DeepSpeed: their overhead is not
   included, nor data loading: batches are collated before the clock starts).
2. eval: weights fp32 on the device, bf16 autocast (as above), as ftgen.evaluate loads and runs a
   model, MFU from the FLOPs its forward passes ran (ftgen.compute.forward_flops):
   scoring tokens/s with ftgen.generation.loglikelihoods ([256] (context, continuation) requests)
   and option_loglikelihoods ([128] contexts x 3 options of 1-4 tokens), batch 16; batched greedy
   generation with ftgen.generation.greedy_generate ([48] prompts of [64..512] tokens, [128] new
   tokens, batch 16): prompt tokens/s (a max_new_tokens=1 pass), generated tokens/s (the whole
   call), decode-only tokens/s (the difference). The head's row of the eos token is zeroed so
   random weights do not end rows at eos (the "\\n\\n" stop string stays, as in the pipeline).
3. bf16 agreement: the same multiple-choice requests ([128] contexts x 4 options, all options of a
   context equally long, 1-4 tokens, so picks turn on the logits) scored with the
   fp32 weights, once in fp32 and once with bf16 autocast as the pipeline does (fp32 vocabulary
   head): agreement of the argmax picks, max and mean |delta log-likelihood|. Random weights make
   the options near-ties, so disagreements are expected where the fp32 margin is below the bf16
   error: this is a numerics check, not an accuracy one; the agreement among picks whose fp32
   margin exceeds twice the largest |delta| ("clear picks", which must agree) is reported apart.

Time: GPU mode counts 5 training configurations (7 with flash_attn) x 13 steps of ~3.2k useful
tokens (~0.05-0.3 s a step on an H100, ~1-4 s a configuration, plus a model build of a few seconds
each; peak memory ~55 GB for padded full fine-tuning, ~8k positions a step), ~30 scoring forward
passes, 3 generation batches of 128 decoding steps (~20-30 ms a step; 3 more prefill only) and two
multiple-choice scorings (fp32 without TF32: a few seconds): about 2-3 minutes with imports, well
inside the 8 minutes a lent machine gives. The `--budget-s` clock is checked before every part and
training configuration; what would start after it is spent is recorded as "skipped: budget". A
part or configuration that fails (out of memory, a missing kernel) is recorded with its error and
the rest still runs; the exit status is 1 if anything failed. Results are written after every part,
so a run killed from outside keeps what was done. Elapsed seconds are printed per part.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import random
import re
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # before torch touches CUDA
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # ftgen.generation's progress bars

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: I001 (after the environment above)

from ftgen.compute import (
    FORWARD_FLOPS_FORMULA,
    device_peak,
    forward_flops,
    model_shape,
    train_flops_per_token,
    utilization,
)
from ftgen.generation import greedy_generate, loglikelihoods, option_loglikelihoods
from ftgen.modeling import resolve_bf16
from ftgen.train import TargetLogitsTrainer, trainer_and_collator

SEED = 0
TARGET_FRACTION = 0.10  # the last 10 % of an example's tokens are targets (at least one)
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
SPECIAL = 3  # ids 0, 1, 2: <unk>, <s>, </s>; workload tokens are drawn from 3..vocab-1


@dataclass(frozen=True)
class Settings:
    """Everything GPU and CPU mode differ in besides the device: shape, workload and step counts."""

    arch: dict
    lengths: tuple[int, int]  # training / scoring example lengths, log-uniform
    batch: int  # examples per optimizer step
    warmup_steps: int
    steps: int
    rows: tuple[int, ...]  # packing_row_tokens of the packed configurations
    lr_lora: float
    lr_full: float
    score_requests: int
    option_contexts: int
    gen_prompts: int
    gen_lengths: tuple[int, int]
    max_new_tokens: int
    eval_batch: int
    agree_contexts: int
    budget_s: float


GPU = Settings(
    arch={  # TinyLlama-1.1B's shape
        "vocab_size": 32000,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
    lengths=(64, 1024),
    batch=8,  # padded full FT: ~7.6k positions a step, ~50 GB peak (activations ~190 KB a token-layer)
    warmup_steps=3,
    steps=10,
    rows=(2048, 256),
    lr_lora=1e-4,
    lr_full=1e-5,
    score_requests=256,
    option_contexts=128,
    gen_prompts=48,
    gen_lengths=(64, 512),
    max_new_tokens=128,
    eval_batch=16,
    agree_contexts=128,
    budget_s=420.0,
)
# the tiny model: the same code and shape of run, smaller everywhere
CPU = replace(
    GPU,
    arch=GPU.arch
    | {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    | {"num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024},
    lengths=(16, 128),
    warmup_steps=1,
    steps=3,
    rows=(256, 32),
    score_requests=32,
    option_contexts=16,
    gen_prompts=16,
    gen_lengths=(16, 64),
    max_new_tokens=16,
    agree_contexts=32,
    budget_s=120.0,
)


# ----------------------------------------------------------------------------- helpers
class Budget:
    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self) -> bool:
        return self.elapsed() >= self.seconds


def log(msg: str) -> None:
    print(msg, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def lengths(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    """Log-uniform in [lo, hi]: many short examples, a long tail (as the studies' prompts)."""
    return [min(hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))) for _ in range(n)]


def token_ids(gen: torch.Generator, n: int, vocab: int) -> list[int]:
    return torch.randint(SPECIAL, vocab, (n,), generator=gen).tolist()


def n_targets(n: int) -> int:
    return max(1, round(TARGET_FRACTION * n))


def synthetic_tokenizer(vocab_size: int):
    """A byte-level tokenizer (the GPT-2 / Llama-3 / SmolLM kind) built offline: Llama's <unk> <s>
    </s>, the 256 byte symbols (so "\\n\\n", greedy_generate's stop string, has tokens) and synthetic
    words " t{id}" up to `vocab_size`; pad = eos, as ftgen.modeling.load_tokenizer sets it. It
    decodes every id the model can emit; nothing is ever encoded with it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    names = ["<unk>", "<s>", "</s>", *sorted(pre_tokenizers.ByteLevel.alphabet())]
    names += [f"\u0120t{i}" for i in range(len(names), vocab_size)]  # \u0120 (Ġ): a leading space
    tok = Tokenizer(models.BPE({n: i for i, n in enumerate(names)}, [], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.pad_token = fast.eos_token
    fast.padding_side = "left"
    return fast


def build_model(arch: dict, device: torch.device, dtype: torch.dtype, attn: str = "sdpa"):
    """Random weights (seeded), built directly on the device."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**arch, bos_token_id=1, eos_token_id=2, pad_token_id=2, attn_implementation=attn)
    torch.manual_seed(SEED)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(dtype)


# ----------------------------------------------------------------------------- workload
def train_examples(s: Settings) -> list[dict]:
    """Examples (input ids, labels -100 on the prompt) for warm-up + timed steps."""
    rng, gen = random.Random(SEED), torch.Generator().manual_seed(SEED)
    out = []
    for n in lengths(rng, s.batch * (s.warmup_steps + s.steps), *s.lengths):
        ids = token_ids(gen, n, s.arch["vocab_size"])
        prompt = n - n_targets(n)
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def padded_loss(model, batch: dict) -> torch.Tensor:
    return model(**batch, use_cache=False).loss


TARGET_LOSS = TargetLogitsTrainer()  # compute_loss uses `self` only with num_items_in_batch


def packed_loss(model, batch: dict) -> torch.Tensor:
    return TARGET_LOSS.compute_loss(model, dict(batch))  # pops "labels" from its own copy


# ----------------------------------------------------------------------------- 1. train
def train_configs(s: Settings) -> list[dict]:
    layouts = [{"layout": "padded", "attn": "sdpa", "row_tokens": None}]
    layouts += [{"layout": "packed", "attn": "sdpa", "row_tokens": r} for r in s.rows]
    if importlib.util.find_spec("flash_attn") is not None:
        layouts.append({"layout": "packed", "attn": "flash_attention_2", "row_tokens": s.rows[0]})
    configs = []
    for method in ("lora", "full"):
        for lay in layouts:
            if method == "full" and lay["layout"] == "packed" and lay["row_tokens"] != s.rows[0]:
                continue  # the studies' short rows: LoRA only
            rows = f"_rows{lay['row_tokens']}" if lay["row_tokens"] else ""
            attn = "_fa2" if lay["attn"] == "flash_attention_2" else ""
            configs.append({"name": f"{method}_{lay['layout']}{rows}{attn}", "method": method, **lay})
    return configs


def train_one(cfg: dict, s: Settings, device: torch.device, bf16: bool, examples: list[dict], peak: dict, tok) -> dict:
    from peft import LoraConfig, get_peft_model

    lora = cfg["method"] == "lora"
    # as ftgen.train: LoRA's frozen base weights in bf16 (adapters fp32), full FT fp32 master weights
    dtype = torch.bfloat16 if (lora and bf16) else torch.float32
    model = build_model(s.arch, device, dtype, cfg["attn"])
    shape = model_shape(model.config.to_dict())
    model.config.use_cache = False
    if lora:
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr_lora if lora else s.lr_full, weight_decay=0.0, fused=True)

    # the project's collators: DataCollatorForSeq2Seq (right-padded; the model's own loss), or
    # PackingCollator rows (loss on target positions only)
    packed = cfg["layout"] == "packed"
    recipe = {"packing": packed, "packing_row_tokens": cfg["row_tokens"], "target_logits_only": True}
    collate, loss_fn = trainer_and_collator(recipe, tok)[1], packed_loss if packed else padded_loss
    batches = [collate(examples[i : i + s.batch]) for i in range(0, len(examples), s.batch)]
    useful = [sum(len(f["input_ids"]) for f in examples[i : i + s.batch]) for i in range(0, len(examples), s.batch)]
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(batch: dict) -> torch.Tensor:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with amp:
            loss = loss_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    losses = [step(b) for b in batches[: s.warmup_steps]]
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    losses += [step(b) for b in batches[s.warmup_steps :]]
    sync(device)
    seconds = time.perf_counter() - start
    losses = [float(x) for x in losses]
    timed = batches[s.warmup_steps :]
    tokens = sum(useful[s.warmup_steps :])
    positions = sum(b["input_ids"].numel() for b in timed)
    mean_len = sum(len(f["input_ids"]) for f in examples) / len(examples)
    result = {
        **cfg,
        "bf16_autocast": bf16,
        "weights_dtype": str(dtype).removeprefix("torch."),
        "trainable_params": sum(p.numel() for p in params),
        "examples_per_step": s.batch,
        "warmup_steps": s.warmup_steps,
        "timed_steps": len(timed),
        "useful_tokens": tokens,  # the examples' tokens: no padding counted
        "positions": positions,  # what the model ran: rows x width, padding included
        "padding_fraction": round(1 - tokens / positions, 4),
        "rows_per_step": round(sum(b["input_ids"].shape[0] for b in timed) / len(timed), 2),
        "seconds": round(seconds, 4),
        "step_s": round(seconds / len(timed), 4),
        **utilization(tokens, seconds, train_flops_per_token(shape, mean_len, lora=lora), peak),
        "peak_memory_gb": peak_gb(device),
        "losses": [round(x, 4) for x in losses],
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "losses_finite": all(math.isfinite(x) for x in losses),
    }
    return result


def part_train(s: Settings, device: torch.device, bf16: bool, budget: Budget) -> dict:
    examples = train_examples(s)
    peak = device_peak(device, bf16)
    tok = synthetic_tokenizer(s.arch["vocab_size"])
    tok.padding_side = "right"  # as ftgen.train loads it for training
    mean_len = sum(len(f["input_ids"]) for f in examples) / len(examples)
    out = {
        "examples": len(examples),
        "mean_example_tokens": round(mean_len, 1),
        "target_fraction": TARGET_FRACTION,
        "lora": LORA,
        "optimizer": "torch.optim.AdamW(fused=True), grad clip 1.0, no scheduler",
        "flops_per_token_formula": "4N (LoRA) or 6N (full) + 12 * layers * heads * head_dim * mean example length",
        "configs": {},
    }
    for cfg in train_configs(s):
        if budget.spent():
            out["configs"][cfg["name"]] = {**cfg, "skipped": "budget"}
            log(f"  train {cfg['name']}: skipped (budget)")
            continue
        t0 = time.perf_counter()
        try:
            res = train_one(cfg, s, device, bf16, examples, peak, tok)
        except Exception as exc:  # e.g. out of memory, a missing kernel: recorded, the rest still runs
            res = {**cfg, "error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": traceback.format_exc()[-4000:]}
        free(device)  # outside `except`: the traceback's frames (holding the model) are gone by now
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        out["configs"][cfg["name"]] = res
        if "error" in res:
            log(f"  train {cfg['name']}: ERROR {res['error'][:300]} ({res['wall_s']} s)")
        else:
            log(
                f"  train {cfg['name']}: {res['tokens_per_s']:,.0f} tok/s, MFU {res['mfu']}, "
                f"peak {res['peak_memory_gb']} GB, loss {res['loss_first']:.3f} -> {res['loss_last']:.3f} "
                f"({res['wall_s']} s)"
            )
    # the first step runs every layout of a method on the same weights and batch: the packed
    # (target-only) loss equals the padded (full-logits) one if packing keeps the examples apart
    for method in ("lora", "full"):
        first = [r["loss_first"] for r in out["configs"].values() if r["method"] == method and "loss_first" in r]
        if len(first) > 1:
            out[f"{method}_first_loss_spread"] = float(f"{max(first) - min(first):.3g}")
    return out


# ----------------------------------------------------------------------------- 2. eval + 3. agreement
def eval_model(s: Settings, device: torch.device):
    """fp32 weights on the device, as ftgen.modeling.load_model loads for evaluation (bf16 is
    autocast); the eos row of the head zeroed so random weights never stop a row early."""
    model = build_model(s.arch, device, torch.float32).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight[2].zero_()
    return model


def mc_requests(
    s: Settings, n: int, n_options: int, seed: int, same_length: bool = False
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Contexts and options of 1-4 tokens (`same_length`: one length for all options of a context,
    so the picks are decided by the logits, not by how many tokens an option has)."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    contexts = [token_ids(gen, n_ctx, s.arch["vocab_size"]) for n_ctx in lengths(rng, n, *s.lengths)]
    options = []
    for _ in contexts:
        sizes = [rng.randint(1, 4)] * n_options if same_length else [rng.randint(1, 4) for _ in range(n_options)]
        options.append([token_ids(gen, k, s.arch["vocab_size"]) for k in sizes])
    return contexts, options


def timed(device: torch.device, fn):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def part_eval(s: Settings, device: torch.device, bf16: bool, model, tok, budget: Budget) -> dict:
    shape = model_shape(model.config.to_dict())
    peak = device_peak(device, bf16)
    vocab = s.arch["vocab_size"]
    out: dict = {"weights_dtype": "float32", "bf16_autocast": bf16, "batch_size": s.eval_batch}
    # FLOPs of what the forward passes ran, as the evaluate step records them (ftgen.evaluate)
    formula = FORWARD_FLOPS_FORMULA

    def flops_per_token(ran: dict, tokens: int, context: float) -> float:
        return forward_flops(shape, ran["forward_tokens"], ran["head_positions"], context) / tokens

    # warm-up: one small batch of each call (kernels, autocast caches), not timed
    rng, gen = random.Random(SEED + 1), torch.Generator().manual_seed(SEED + 1)
    loglikelihoods(model, tok.pad_token_id, [(token_ids(gen, 32, vocab), [5, 6])] * 2, 2, bf16)

    # loglikelihoods: (context, continuation) requests, each run in full
    reqs = []
    for n in lengths(rng, s.score_requests, *s.lengths):
        ids = token_ids(gen, n, vocab)
        reqs.append((ids[: n - n_targets(n)], ids[n - n_targets(n) :]))
    ran: dict = {}
    scores, sec = timed(device, lambda: loglikelihoods(model, tok.pad_token_id, reqs, s.eval_batch, bf16, counts=ran))
    tokens = sum(len(c) + len(t) for c, t in reqs)
    out["loglikelihoods"] = {
        "requests": len(reqs),
        "tokens": tokens,
        "seconds": round(sec, 4),
        **utilization(tokens, sec, flops_per_token(ran, tokens, tokens / len(reqs)), peak),
        "flops_per_token_formula": formula,
        "all_finite": all(math.isfinite(x) for x in scores),
    }
    log(f"  eval loglikelihoods: {out['loglikelihoods']['tokens_per_s']:,.0f} tok/s")
    if budget.spent():
        return {**out, "option_loglikelihoods": {"skipped": "budget"}, "generation": {"skipped": "budget"}}

    # option_loglikelihoods: each context once, then every option on its KV cache
    contexts, options = mc_requests(s, s.option_contexts, 3, SEED + 2)
    ran = {}
    rows, sec = timed(
        device,
        lambda: option_loglikelihoods(model, tok.pad_token_id, contexts, options, s.eval_batch, bf16, counts=ran),
    )
    # as ftgen.evaluate counts them: each context once + every option's tokens after its first
    tokens = sum(len(c) for c in contexts) + sum(len(o) - 1 for opts in options for o in opts)
    out["option_loglikelihoods"] = {
        "contexts": len(contexts),
        "options_per_context": 3,
        "tokens": tokens,
        "seconds": round(sec, 4),
        **utilization(tokens, sec, flops_per_token(ran, tokens, sum(map(len, contexts)) / len(contexts)), peak),
        "flops_per_token_formula": formula,
        "all_finite": all(math.isfinite(x) for r in rows for x in r),
    }
    log(f"  eval option_loglikelihoods: {out['option_loglikelihoods']['tokens_per_s']:,.0f} tok/s")
    if budget.spent():
        return {**out, "generation": {"skipped": "budget"}}

    # greedy_generate: a max_new_tokens=1 pass (prefill) and the full one
    prompts = [token_ids(gen, n, vocab) for n in lengths(rng, s.gen_prompts, *s.gen_lengths)]
    greedy_generate(model, tok, prompts[:2], 2, 2, bf16)  # warm-up
    prompt_tokens = sum(map(len, prompts))
    pre_counts: dict = {}
    _, pre_sec = timed(device, lambda: greedy_generate(model, tok, prompts, 1, s.eval_batch, bf16, counts=pre_counts))
    counts: dict = {}
    texts, sec = timed(
        device, lambda: greedy_generate(model, tok, prompts, s.max_new_tokens, s.eval_batch, bf16, counts=counts)
    )
    generated = counts.get("generated_tokens", 0)
    decode_sec = max(sec - pre_sec, 1e-9)
    mean_ctx = prompt_tokens / len(prompts) + s.max_new_tokens / 2
    out["generation"] = {
        "prompts": len(prompts),
        "prompt_tokens": prompt_tokens,
        "max_new_tokens": s.max_new_tokens,
        "generated_tokens": generated,  # rows x decoding steps, as ftgen.generation counts them
        "prefill_seconds": round(pre_sec, 4),  # max_new_tokens=1: prompt tokens + one token a row
        "seconds": round(sec, 4),
        "prompt_tokens_per_s": round(prompt_tokens / pre_sec, 1),
        "generated_tokens_per_s": round(generated / sec, 1),  # the whole call, prefill included
        "decode_tokens_per_s": round((generated - pre_counts.get("generated_tokens", 0)) / decode_sec, 1),
        "total": utilization(
            prompt_tokens + generated, sec, flops_per_token(counts, prompt_tokens + generated, mean_ctx), peak
        ),
        "flops_per_token_formula": formula + " (context: prompt + max_new_tokens / 2)",
        "nonempty_outputs": sum(bool(t) for t in texts),
    }
    g = out["generation"]
    log(
        f"  eval generation: prompt {g['prompt_tokens_per_s']:,.0f} tok/s, generated {g['generated_tokens_per_s']:,.0f}"
        f" tok/s (decode only {g['decode_tokens_per_s']:,.0f})"
    )
    return out


def choose(scores: list[float]) -> int:
    """The best option, ties to the first (ftgen.evaluate.choose, which imports the data layer)."""
    return scores.index(max(scores))


def part_agreement(s: Settings, device: torch.device, model, tok) -> dict:
    contexts, options = mc_requests(s, s.agree_contexts, 4, SEED + 3, same_length=True)
    fp32, sec32 = timed(
        device, lambda: option_loglikelihoods(model, tok.pad_token_id, contexts, options, s.eval_batch, False)
    )
    bf16, sec16 = timed(
        device, lambda: option_loglikelihoods(model, tok.pad_token_id, contexts, options, s.eval_batch, True)
    )
    deltas = [abs(a - b) for r32, r16 in zip(fp32, bf16) for a, b in zip(r32, r16)]
    picks32, picks16 = [choose(r) for r in fp32], [choose(r) for r in bf16]
    agree = [a == b for a, b in zip(picks32, picks16)]
    max_delta = max(deltas)

    def margin(row: list[float]) -> float:
        top = sorted(row, reverse=True)
        return top[0] - top[1]

    margins = [margin(r) for r in fp32]
    clear = [ok for ok, m in zip(agree, margins) if m > 2 * max_delta]
    return {
        "contexts": len(contexts),
        "options_per_context": 4,
        "fp32_seconds": round(sec32, 4),
        "bf16_seconds": round(sec16, 4),
        "tf32_matmul_allowed": bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" else None,
        "agreement": round(sum(agree) / len(agree), 4),
        "disagreements": len(agree) - sum(agree),
        "max_abs_delta_loglik": round(max_delta, 6),
        "mean_abs_delta_loglik": round(sum(deltas) / len(deltas), 6),
        "mean_abs_fp32_loglik": round(sum(abs(x) for r in fp32 for x in r) / len(deltas), 4),
        "median_fp32_margin": round(sorted(margins)[len(margins) // 2], 6),
        "max_fp32_margin_of_disagreements": round(max((m for ok, m in zip(agree, margins) if not ok), default=0.0), 6),
        "clear_picks": len(clear),  # fp32 margin > 2 x max |delta|: bf16 should pick the same
        "clear_pick_agreement": round(sum(clear) / len(clear), 4) if clear else None,
        "ties_fp32": sum(r.count(max(r)) > 1 for r in fp32),
        "ties_bf16": sum(r.count(max(r)) > 1 for r in bf16),
        "all_finite": all(math.isfinite(x) for r in fp32 + bf16 for x in r),
        "note": "random weights: options are near-ties, so this checks numerics, not accuracy",
    }


# ----------------------------------------------------------------------------- report
def fmt(x, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}" if abs(x) >= 1 or x == 0 else f"{x:.{digits + 2}g}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def status(r: dict) -> str:
    """What a table row says for a part that did not run: skipped (why) or its error."""
    return f"skipped: {r['skipped']}" if "skipped" in r else f"error: {r.get('error', '?')[:100]}"


def markdown(data: dict) -> str:
    m, s = data["model"], data["settings"]
    lines = [
        f"# GPU acceptance check ({data['mode']} mode): {data['device']}",
        "",
        f"`{data['command']}` on {data['created']}; torch {data['versions']['torch']}, transformers "
        f"{data['versions']['transformers']}, peft {data['versions']['peft']}, CUDA {data['versions']['cuda']}, "
        f"flash_attn {data['versions']['flash_attn'] or 'not installed'}. Total {data['total_wall_s']} s "
        f"(budget {data['budget_s']} s): " + ", ".join(f"{k} {v} s" for k, v in data["part_wall_s"].items()) + ".",
        "",
        f"Model: random-weight Llama, {m['shape']['params'] / 1e6:,.1f}M parameters (N = "
        f"{m['shape']['matmul_params'] / 1e6:,.1f}M in matmuls), {m['shape']['layers']} layers, hidden "
        f"{m['arch']['hidden_size']}, vocabulary {m['shape']['vocab']}. Peak for MFU: {data['peak']['peak_source']}"
        f" ({fmt((data['peak']['peak_flops'] or 0) / 1e12)} TFLOP/s).",
        "",
    ]
    if data.get("errors"):
        lines += ["**Errors:** " + "; ".join(data["errors"]), ""]
    train = data["parts"].get("train", {})
    lines += [
        "## 1. Fine-tuning throughput",
        "",
        f"{s['batch']} examples per optimizer step (log-uniform {s['lengths'][0]}..{s['lengths'][1]} tokens, "
        f"mean {train.get('mean_example_tokens', '-')}, last 10 % targets), {s['warmup_steps']} warm-up + "
        f"{s['steps']} timed steps on the same batches for every row, bf16 autocast, fused AdamW. LoRA r 16 on "
        "q,k,v,o with bf16 frozen weights; full: fp32 master weights. Padded: right-padded, the model's own loss "
        "(logits everywhere); packed: ftgen.train.PackingCollator rows + target-only logits. Tokens/s count the "
        "examples' tokens only; `padding` is the share of computed positions that were padding. This script's own "
        "loop: no Trainer/DeepSpeed overhead.",
        "",
        "| config | attention | tokens/s | MFU | step s | padding | peak GB | loss first -> last |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in train.get("configs", {}).items():
        if "skipped" in r or "error" in r:
            lines.append(f"| {name} | {r['attn']} | {status(r)} | | | | | |")
            continue
        lines.append(
            f"| {name} | {r['attn']} | {fmt(r['tokens_per_s'], 0)} | {fmt(r['mfu'], 3)} | {fmt(r['step_s'], 3)} | "
            f"{r['padding_fraction']:.1%} | {fmt(r['peak_memory_gb'], 1)} | {r['loss_first']:.3f} -> "
            f"{r['loss_last']:.3f} |"
        )
    spreads = {m: train.get(f"{m}_first_loss_spread") for m in ("lora", "full")}
    if any(v is not None for v in spreads.values()):
        lines += [
            "",
            f"First-step loss spread across a method's layouts (same weights, same batch): LoRA "
            f"{fmt(spreads['lora'], 2)}, full {fmt(spreads['full'], 2)}; near 0 when packed rows keep their "
            "examples apart and the target-only loss equals the padded one.",
        ]
    ev = data["parts"].get("eval", {})
    lines += [
        "",
        "## 2. Evaluation throughput",
        "",
        "fp32 weights, bf16 autocast (as ftgen.evaluate runs a model on a GPU), batch "
        f"{s['eval_batch']}, ftgen.generation's functions. Scoring: {s['score_requests']} (context, continuation) "
        f"requests; options: {s['option_contexts']} contexts x 3 options (1-4 tokens), each context run once. "
        f"Generation: {s['gen_prompts']} prompts of {s['gen_lengths'][0]}..{s['gen_lengths'][1]} tokens, "
        f"{s['max_new_tokens']} new tokens; prompt tokens/s from a max_new_tokens=1 pass, decode = the rest.",
        "",
        "| call | tokens | seconds | tokens/s | MFU |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key in ("loglikelihoods", "option_loglikelihoods"):
        r = ev.get(key, {})
        if "tokens" in r:
            lines.append(
                f"| {key} | {r['tokens']:,} | {fmt(r['seconds'], 2)} | {fmt(r['tokens_per_s'], 0)} | "
                f"{fmt(r['mfu'], 3)} |"
            )
        elif r:
            lines.append(f"| {key} | {status(r)} | | | |")
    g = ev.get("generation", {})
    if "prompt_tokens" in g:
        lines += [
            f"| generation: prompts (prefill) | {g['prompt_tokens']:,} | {fmt(g['prefill_seconds'], 2)} | "
            f"{fmt(g['prompt_tokens_per_s'], 0)} | |",
            f"| generation: generated (whole call) | {g['generated_tokens']:,} | {fmt(g['seconds'], 2)} | "
            f"{fmt(g['generated_tokens_per_s'], 0)} | {fmt(g['total']['mfu'], 3)} (all tokens) |",
            f"| generation: decode only | | {fmt(g['seconds'] - g['prefill_seconds'], 2)} | "
            f"{fmt(g['decode_tokens_per_s'], 0)} | |",
        ]
    elif g:
        lines.append(f"| generation | {status(g)} | | | |")
    a = data["parts"].get("bf16_agreement", {})
    lines += ["", "## 3. bf16 vs fp32 scoring", ""]
    if "agreement" in a:
        lines += [
            f"{a['contexts']} contexts x 4 equally long options scored by option_loglikelihoods with the same "
            "fp32 weights, in fp32 "
            f"(TF32 matmuls allowed: {a['tf32_matmul_allowed']}) and with bf16 autocast (fp32 head), as the "
            "pipeline does. Random weights make the options near-ties (median fp32 margin below), so "
            "disagreements are expected where the margin is under the bf16 error; `clear picks` are those with "
            "an fp32 margin over twice the largest |delta|.",
            "",
            "| agreement | disagreements | max abs delta | mean abs delta | mean abs loglik | median fp32 margin | "
            "clear picks agreeing | ties fp32 / bf16 |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {a['agreement']:.1%} | {a['disagreements']} | {a['max_abs_delta_loglik']:.4g} | "
            f"{a['mean_abs_delta_loglik']:.4g} | {a['mean_abs_fp32_loglik']:.4g} | {a['median_fp32_margin']:.4g} | "
            f"{fmt(a['clear_pick_agreement'], 3)} of {a['clear_picks']} | {a['ties_fp32']} / {a['ties_bf16']} |",
        ]
    elif a:
        lines.append(status(a))
    return "\n".join(lines) + "\n"


def write(out_dir: Path, name: str, data: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown(data))


# ----------------------------------------------------------------------------- main
def result_name(device: str) -> str:
    """One result per GPU it ran on (the estimate reads those of its --device's kind):
    "NVIDIA H200" -> gpu_check_nvidia_h200."""
    return "gpu_check_" + re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="the tiny model on the CPU (seconds)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--budget-s", type=float, default=None, help="default 420 (GPU), 120 (CPU)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("GPU mode needs CUDA; --cpu runs the tiny model on the CPU")
    s = CPU if args.cpu else GPU
    device = torch.device("cpu" if args.cpu else "cuda")
    budget = Budget(args.budget_s if args.budget_s is not None else s.budget_s)
    # as the pipeline's `bf16: auto`: on GPUs with bf16 and on CPUs whose bf16 matmuls are measured
    # faster than fp32 ones; elsewhere (an AVX2-only CPU: 1 vs 128 GFLOP/s) bf16 would be a
    # different, pathological path, and MFU against its 1024^3 peak meaningless
    bf16 = resolve_bf16("auto", device)
    torch.manual_seed(SEED)

    peak = device_peak(device, bf16)
    name = "gpu_check_cpu" if args.cpu else result_name(peak["device"])
    data = {
        "mode": "cpu" if args.cpu else "gpu",
        "device": peak["device"],
        "peak": peak,
        "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(["python", __file__, *argv]),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": version("transformers"),
            "peft": version("peft"),
            "accelerate": version("accelerate"),
            "flash_attn": version("flash-attn") or version("flash_attn"),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        },
        "device_count": torch.cuda.device_count() if device.type == "cuda" else None,
        "device_memory_gb": (
            round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1) if device.type == "cuda" else None
        ),
        "bf16": bf16,
        "budget_s": budget.seconds,
        "settings": asdict(s),
        "model": {"arch": s.arch, "shape": model_shape(s.arch).as_dict()},
        "parts": {},
        "part_wall_s": {},
        "errors": [],
    }
    log(f"gpu_check ({data['mode']}): {data['device']}, torch {torch.__version__}, budget {budget.seconds:.0f} s")

    def run_part(part: str, fn) -> None:
        if budget.spent():
            data["parts"][part] = {"skipped": "budget"}
            log(f"[{part}] skipped: budget ({budget.elapsed():.1f} s elapsed)")
        else:
            t0 = time.perf_counter()
            log(f"[{part}] start at {budget.elapsed():.1f} s")
            try:
                data["parts"][part] = fn()
            except Exception as exc:
                data["parts"][part] = {
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "traceback": traceback.format_exc(),
                }
                log(traceback.format_exc())
            data["part_wall_s"][part] = round(time.perf_counter() - t0, 2)
            log(f"[{part}] done in {data['part_wall_s'][part]} s (total {budget.elapsed():.1f} s)")
        data["total_wall_s"] = round(budget.elapsed(), 2)
        write(args.out, name, data)

    run_part("train", lambda: part_train(s, device, bf16, budget))
    state: dict = {}

    def evaluation() -> dict:
        state["tok"] = synthetic_tokenizer(s.arch["vocab_size"])
        state["model"] = eval_model(s, device)
        return part_eval(s, device, bf16, state["model"], state["tok"], budget)

    run_part("eval", evaluation)

    def agreement() -> dict:
        if "model" not in state:
            state["tok"], state["model"] = synthetic_tokenizer(s.arch["vocab_size"]), eval_model(s, device)
        return part_agreement(s, device, state["model"], state["tok"])

    run_part("bf16_agreement", agreement)

    for part, res in data["parts"].items():
        if "error" in res:
            data["errors"].append(f"{part}: {res['error'][:300]}")
        for cfg, r in res.get("configs", {}).items():
            if "error" in r:
                data["errors"].append(f"train {cfg}: {r['error'][:300]}")
        for call in ("loglikelihoods", "option_loglikelihoods", "generation"):
            if isinstance(res.get(call), dict) and "error" in res[call]:
                data["errors"].append(f"{part} {call}: {res[call]['error'][:300]}")
    data["total_wall_s"] = round(budget.elapsed(), 2)
    write(args.out, name, data)
    log(markdown(data))
    log(f"wrote {args.out / name}.json and .md in {data['total_wall_s']} s")
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
