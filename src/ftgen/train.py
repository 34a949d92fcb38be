"""Fine-tune rule: HF Trainer + peft LoRA (default) or full fine-tuning, optional DeepSpeed.

Read top to bottom: load data -> build model (+ LoRA) -> Trainer -> resume from the checkpoint
folder if one matches this exact recipe -> train -> save the final adapter/model atomically with
a manifest. Checkpoints live outside the declared output so a killed job resumes on rerun.

Speed levers (each measured in benchmarks/train_throughput.py): bf16 autocast where the hardware
has it; `packing`: each batch's examples packed into rows of at most `packing_row_tokens`, with
position ids restarting per example, so almost no padding is computed and transformers keeps the
examples' attention apart (same examples per optimizer step as padded batches);
`target_logits_only` (with packing): the vocabulary projection and loss run only where a target
token is predicted, not on the prompt; `bf16_frozen_weights` (LoRA + bf16): the frozen base
weights stored in bf16; `sparse_dropout` (LoRA): the adapters' input dropout draws only the
positions it drops (ftgen.dropout).

The same function runs as one process or as every rank of a `torchrun` launch (see launch.py):
on GPUs with NCCL, on CPUs with gloo (DeepSpeed included). Saving is collective (ZeRO-3 gathers
the shards) and only rank 0 writes the output.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import torch

from .allocator import loaded_allocator
from .artifacts import config_hash, manifest, read_json, write_json
from .compute import device_peak, model_shape, train_flops_per_token, utilization
from .dropout import sparse_lora_dropout
from .modeling import load_tokenizer, resolve_bf16, set_threads
from .step import Folder, Input, Json, Output, Threads
from .study.schema import with_defaults


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def schedule(recipe: dict, n_examples: int, world_size: int) -> dict:
    """Optimizer steps, warm-up, logging and save steps from the *global* batch.

    Every rank sees 1/world_size of the data, so a rank's own view (per-device batch x
    accumulation) overcounts the steps by the world size: a 3 % warm-up on 8 GPUs would become
    ~20 % of training. Mirrors the Trainer: the batches are split across ranks (accelerate's even
    batches), an epoch ends with a partial accumulation step, and warm-up is ceil(ratio x total).
    """
    recipe = with_defaults(recipe, definition="recipe")
    per_device = int(recipe["per_device_batch_size"])
    accumulation = int(recipe["gradient_accumulation"])
    batches_per_rank = ceil_div(ceil_div(n_examples, per_device), world_size)
    steps_per_epoch = max(1, ceil_div(batches_per_rank, accumulation))
    total = int(recipe.get("max_steps") or math.ceil(steps_per_epoch * recipe["epochs"]))
    return {
        "world_size": world_size,
        "global_batch": per_device * accumulation * world_size,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total,
        "warmup_steps": math.ceil(float(recipe["warmup_ratio"]) * total),
        # counted in optimizer steps, which are global: the same on every rank
        "logging_steps": int(recipe["logging_steps"]),
        "save_steps": int(recipe["save_steps"]),
    }


def run_loss(log_history: list[dict]) -> tuple[float | None, int]:
    """The mean training loss of the whole run from the Trainer's log, which a resumed run
    restores from its checkpoint (the Trainer's own `training_loss` averages only this process's
    steps over all steps: 0.0 or a fraction after a resume). Each logged loss is the mean of its
    interval; intervals are weighted by their steps. Returns (loss, last step it covers)."""
    total, steps, last = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry and entry["step"] > last:
            total += entry["loss"] * (entry["step"] - last)
            steps += entry["step"] - last
            last = entry["step"]
    return (total / steps if steps else None), last


def _training_args(recipe: dict, ckpt_dir: Path, plan: dict, bf16: bool):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=recipe["per_device_batch_size"],
        gradient_accumulation_steps=recipe["gradient_accumulation"],
        learning_rate=recipe["learning_rate"],
        num_train_epochs=recipe["epochs"],
        max_steps=recipe.get("max_steps") or -1,
        lr_scheduler_type=recipe["lr_scheduler"],
        warmup_steps=plan["warmup_steps"],
        weight_decay=recipe["weight_decay"],
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        seed=recipe["seed"],
        data_seed=recipe["seed"],
        save_strategy="steps",
        save_steps=plan["save_steps"],
        save_total_limit=1,
        logging_steps=plan["logging_steps"],
        train_sampling_strategy="group_by_length" if recipe["group_by_length"] else "random",
        activation_checkpointing=recipe["activation_checkpointing"],
        deepspeed=recipe.get("deepspeed"),
        report_to=[],
        # Trainer sets model.config.use_cache from this. It must stay off for packing: with a KV
        # cache transformers skips the attention isolation it derives from restarting positions.
        use_cache=False,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def _prepare_checkpoint_dir(ckpt_dir: Path, recipe: dict) -> None:
    """Keep checkpoints only if they were written by this exact recipe (rank 0 only)."""
    stamp = ckpt_dir / "recipe.json"
    if ckpt_dir.exists() and (not stamp.exists() or read_json(stamp).get("hash") != config_hash(recipe)):
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"hash": config_hash(recipe), "recipe": recipe})


def _latest_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest complete checkpoint. Trainer writes trainer_state.json last, so a folder
    without it was cut short by a kill (SIGKILL, node failure, SLURM time limit) and is skipped."""
    done = sorted(
        (p for p in ckpt_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    return str(done[-1]) if done else None


def _world() -> tuple[int, int]:
    return int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))


def _single_process_rendezvous(recipe: dict) -> None:
    """DeepSpeed in a process not started by torchrun (`ftgen launch` runs one process in place:
    one GPU, or a CPU): the rank variables of a world of one, else DeepSpeed falls back to MPI
    discovery (mpi4py) and the job dies before training."""
    if recipe.get("deepspeed") and "RANK" not in os.environ:
        import socket

        with socket.socket() as sock:  # a free port for the rendezvous of one
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        os.environ.update(
            RANK="0",
            LOCAL_RANK="0",
            WORLD_SIZE="1",
            LOCAL_WORLD_SIZE="1",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )


def _init_cpu_distributed(recipe: dict) -> None:
    """CPU processes: without this DeepSpeed sees every rank as rank 0 of 1 (several), or looks
    for a CUDA/CCL backend (one).

    Must run after TrainingArguments (which registers the DeepSpeed config that ZeRO-3 needs
    at model construction) and before `from_pretrained`.
    """
    if not torch.cuda.is_available() and recipe.get("deepspeed"):
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")


def _zero_stage(trainer) -> int | None:
    engine = trainer.model_wrapped
    return engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else None


def _publish(trainer, tok, out_dir: str, write_extra) -> None:
    """Every rank saves (collective under ZeRO-3); rank 0 stages, completes and renames."""
    out = Path(out_dir)
    staging = out.parent / f".{out.name}.staging"
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    trainer.accelerator.wait_for_everyone()
    try:
        trainer.save_model(str(staging))
        if main:
            tok.save_pretrained(str(staging))
            write_extra(staging)
            if out.exists():
                shutil.rmtree(out)
            os.replace(staging, out)
    finally:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


class PackingCollator:
    """Packs a batch's examples into rows of at most `row_tokens` tokens (first fit, longest first;
    an example longer than that gets a row of its own; 0: the whole batch in one row).

    Position ids restart at 0 for every example, which is how transformers keeps packed examples
    from attending to each other (it derives the segments from them; the model must run without a
    KV cache). Rows are right-padded with a segment of their own, labelled -100. Bounded rows keep
    attention cheap: with a dense mask its cost grows with the square of the row length.
    """

    def __init__(self, pad_id: int, row_tokens: int = 0):
        self.pad_id, self.row_tokens = pad_id, row_tokens

    def __call__(self, features: list[dict]) -> dict:
        rows: list[list[dict]] = []
        for f in sorted(features, key=lambda f: -len(f["input_ids"])):
            n = len(f["input_ids"])
            row = next(
                (r for r in rows if not self.row_tokens or sum(len(x["input_ids"]) for x in r) + n <= self.row_tokens),
                None,
            )
            if row is None:
                rows.append([f])
            else:
                row.append(f)
        width = max(sum(len(x["input_ids"]) for x in r) for r in rows)
        batch = {"input_ids": [], "position_ids": [], "labels": []}
        for r in rows:
            ids, pos, labels = [], [], []
            for x in r:
                ids += list(x["input_ids"])
                pos += range(len(x["input_ids"]))
                labels += [-100] + list(x["labels"][1:])  # nothing predicts an example's first token
            pad = width - len(ids)
            batch["input_ids"].append(ids + [self.pad_id] * pad)
            batch["position_ids"].append(pos + list(range(pad)))
            batch["labels"].append(labels + [-100] * pad)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


class TargetLogitsTrainer:
    """Trainer mixin: the loss from logits at target positions only.

    The prompt is most of every training row (a sentiment example: ~70 prompt tokens, 2 target
    tokens), and its logits (49k-way for SmolLM2) are computed and thrown away by the model's own
    loss. Same value as that loss: the sum of target-token cross-entropies divided by the
    Trainer's `num_items_in_batch` (targets across the accumulated batch and devices). The
    vocabulary projection runs on the positions where any row predicts a target.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        following = labels[:, 1:]  # position t predicts token t+1; -100: prompt, example start, padding
        valid = following != -100
        cols = valid.any(0).nonzero().squeeze(-1)
        outputs = model(**inputs, logits_to_keep=cols, use_cache=False)
        chosen = valid[:, cols]
        loss = torch.nn.functional.cross_entropy(
            outputs.logits[chosen].float(), following[:, cols][chosen], reduction="sum"
        )
        if num_items_in_batch is None:
            loss = loss / max(1, int(chosen.sum()))
        else:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:  # as Trainer.compute_loss: DDP averages the grads
                loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss


def trainer_and_collator(recipe: dict, tok):
    """The Trainer class and batch collator a recipe trains with (padded rows, or packed ones with
    the loss on target positions only); benchmarks/gpu_check.py times the same two."""
    from transformers import DataCollatorForSeq2Seq, Trainer

    if not recipe["packing"]:
        return Trainer, DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    collator = PackingCollator(tok.pad_token_id, recipe["packing_row_tokens"])
    if recipe["target_logits_only"]:
        return type("PackedTrainer", (TargetLogitsTrainer, Trainer), {}), collator
    return Trainer, collator


def finetune(
    *,
    model: Input,
    tokenized: Input,
    recipe: Json,
    finetuned: Output,
    checkpoints: Folder,
    threads: Threads = None,
    log=print,
) -> dict:
    from datasets import load_from_disk
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, set_seed

    # the recipe as written names the run (checkpoint stamp, manifest); it is read with its defaults
    written, recipe = recipe, with_defaults(recipe, definition="recipe")
    _, local_world = _world()
    if threads and local_world > 1:
        threads = max(1, threads // local_world)  # the job's CPUs are shared by its processes
    set_threads(threads)
    set_seed(recipe["seed"])
    train = load_from_disk(str(Path(tokenized) / "dataset"))["train"]
    if recipe["size"] > len(train):
        raise ValueError(f"training size {recipe['size']} > {len(train)} tokenized examples in {tokenized}")
    train = train.select(range(recipe["size"])).remove_columns(["id", "truncated"])
    tok = load_tokenizer(model, padding_side="right")
    bf16 = resolve_bf16(recipe["bf16"])
    _single_process_rendezvous(recipe)
    plan = schedule(recipe, len(train), _world()[0])
    args = _training_args(recipe, Path(checkpoints), plan, bf16)
    _init_cpu_distributed(recipe)

    # LoRA trains only the adapters: frozen base weights in bf16 spare autocast re-casting every
    # weight at every matmul (the adapters stay fp32; peft upcasts them). Full fine-tuning keeps
    # fp32 master weights.
    frozen_bf16 = bf16 and recipe["method"] == "lora" and recipe["bf16_frozen_weights"]
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if frozen_bf16 else torch.float32)
    shape = model_shape(lm.config.to_dict())
    if recipe["method"] == "lora":
        lora = recipe.get("lora", {})
        lm = get_peft_model(
            lm,
            LoraConfig(
                task_type="CAUSAL_LM",
                r=lora.get("r", 8),
                lora_alpha=lora.get("alpha", 16),
                lora_dropout=lora.get("dropout", 0.05),
                target_modules=lora.get("target_modules", ["q_proj", "v_proj"]),
            ),
        )
        if recipe["sparse_dropout"]:
            sparse_lora_dropout(lm)
    trainable = sum(getattr(p, "ds_numel", p.numel()) for p in lm.parameters() if p.requires_grad)
    log(
        f"method={recipe['method']} trainable={trainable:,} bf16={bf16} frozen_bf16={frozen_bf16} "
        f"sparse_dropout={recipe['sparse_dropout']} "
        f"packing={bool(recipe.get('packing'))} examples={len(train)} "
        f"world_size={args.world_size} rank={args.process_index}"
    )

    trainer_cls, collator = trainer_and_collator(recipe, tok)
    trainer = trainer_cls(model=lm, args=args, train_dataset=train, processing_class=tok, data_collator=collator)
    if trainer.is_world_process_zero():
        _prepare_checkpoint_dir(Path(checkpoints), written)
    trainer.accelerator.wait_for_everyone()
    resume = _latest_checkpoint(Path(checkpoints))
    if resume:
        log(f"resuming from {resume}")
    start = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.time() - start
    lengths = [len(ids) for ids in train["input_ids"]]
    if recipe.get("max_steps"):  # steps, not epochs, bound the run: count the samples drawn
        drawn = (
            result.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        )
        tokens = drawn * sum(lengths) / len(lengths)
    else:
        tokens = sum(lengths) * recipe["epochs"]
    if resume:  # the clock covers this run's steps only
        done_before = int(Path(resume).name.rsplit("-", 1)[1])
        tokens *= (result.global_step - done_before) / max(1, result.global_step)
    lora = recipe["method"] == "lora"
    compute = utilization(
        tokens,
        wall,
        train_flops_per_token(shape, sum(lengths) / len(lengths), lora=lora),
        device_peak(args.device, bf16),
        devices=args.world_size,
    )
    compute["flops_per_token_formula"] = f"{4 if lora else 6}N + 12 * layers * heads * head_dim * mean example length"
    compute["model_shape"] = shape.as_dict()

    loss, covered = run_loss(trainer.state.log_history)
    summary = {
        # the whole run's loss (resumed or not), from the logged intervals up to `covered`
        "train_loss": loss if loss is not None else result.training_loss,
        "train_loss_steps": [1, covered] if loss is not None else None,
        "global_steps": result.global_step,
        "schedule": {**plan, "trainer_max_steps": trainer.state.max_steps},
        "wall_time_s": round(wall, 2),
        "tokens_per_s": compute["tokens_per_s"],
        "compute": compute,  # throughput and MFU (ftgen.compute)
        "trainable_params": trainable,
        "bf16": bf16,
        "frozen_weights_bf16": frozen_bf16,
        "cpu_allocator": loaded_allocator(),  # the malloc this process runs with (ftgen.allocator)
        "resumed_from": resume,
        "distributed": {
            "world_size": args.world_size,
            "backend": str(trainer.accelerator.state.backend) if args.world_size > 1 else None,
            "deepspeed_config": recipe.get("deepspeed"),
            "zero_stage": _zero_stage(trainer),  # as the DeepSpeed engine reports it
            "device": str(args.device),
        },
    }

    def write_extra(tmp: Path) -> None:
        with open(tmp / "train_log.jsonl", "w") as fh:
            for entry in trainer.state.log_history:
                fh.write(json.dumps(entry) + "\n")
        write_json(
            tmp / "manifest.json",
            manifest(
                "finetuned", written, inputs={"model": model, "tokenized": tokenized}, seed=recipe["seed"], **summary
            ),
        )

    _publish(trainer, tok, finetuned, write_extra)
    log(f"done: {summary}")
    return summary
