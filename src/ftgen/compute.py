"""Compute arithmetic shared by the fine-tune and evaluate manifests, `ftgen estimate` and
benchmarks/gpu_check.py: a model's matmul parameters from its HF config, FLOPs per token, the
device's peak and model FLOPs utilization (MFU).

Conventions (PaLM, Chowdhery et al. 2022, appendix B): N = parameters that take part in a
matmul for one token (all but the input embedding; the output head counts, tied or not; a
mixture of experts counts the experts a token is routed to). Training costs 6N per token for full
fine-tuning (forward 2N, backward 4N) and 4N for LoRA (the frozen weights get no weight
gradients; the adapters' own FLOPs are negligible), plus attention 12 * layers * heads * head_dim *
context; a forward pass (scoring, generation) costs 2N + 4 * layers * heads * head_dim * context.
Model FLOPs, not hardware FLOPs: work an implementation skips (the project's target-only logits)
or repeats (activation checkpointing) does not change them.

Evaluation counts each token the task needs encoded once (`forward_flops`): a prefix that every
prompt shares (chat template, instructions, few-shot demonstrations) is one set of tokens, run
once, and the output head runs only where logits are read (options' and generated positions).
Counted per prompt with the head at every position, as the training convention does, a SmolLM2
sentiment cell (a 28-token prefix shared by 64 prompts of 67 tokens) had 2.1x the FLOPs its model
ran, and an MFU of 1.72 against the CPU's measured matmul peak.
"""

from __future__ import annotations

import functools
import platform
import re
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Dense bf16 tensor-core peak per device (TFLOP/s, no structured sparsity), from the vendors'
# datasheets. Matched against torch.cuda.get_device_name() in order: the first substring wins.
GPU_PEAK_TFLOPS = [
    ("H200", 989.0),  # H200 SXM (same tensor cores as H100 SXM)
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # H100 SXM5 ("NVIDIA H100 80GB HBM3")
    ("GH200", 989.0),
    ("A100", 312.0),  # SXM and PCIe
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
    ("A6000", 155.0),
    ("V100", 125.0),  # fp16: V100 has no bf16
    ("MI300X", 1307.0),
    ("MI250X", 383.0),
]


@dataclass(frozen=True)
class Shape:
    """What the FLOPs formulas need from a decoder-only transformer's config."""

    params: int  # all parameters (stored once; tied embeddings once)
    matmul_params: int  # N: per token, experts routed to only
    layers: int
    heads: int
    head_dim: int
    vocab: int
    head_params: int  # the output projection (vocab x hidden), part of N

    def as_dict(self) -> dict:
        return asdict(self)


def model_shape(config: dict) -> Shape:
    """Parameter counts of a Llama / Mistral / Mixtral style config (HF config.json keys)."""
    d, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or d // heads
    vocab = config["vocab_size"]
    experts, routed = config.get("num_local_experts") or 1, config.get("num_experts_per_tok") or 1
    attn = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2  # q, o; k, v
    attn += (heads + 2 * kv_heads) * head_dim if config.get("attention_bias") else 0
    mlp = 3 * d * inter  # gate, up, down
    router = d * experts if experts > 1 else 0
    head = vocab * d
    tied = config.get("tie_word_embeddings", False)
    params = vocab * d + layers * (attn + experts * mlp + router + 2 * d) + d + (0 if tied else head)
    matmul = layers * (attn + min(routed, experts) * mlp + router) + head
    return Shape(params, matmul, layers, heads, head_dim, vocab, head)


def train_flops_per_token(shape: Shape, context: float, lora: bool) -> float:
    """Model FLOPs to train on one token whose example is `context` tokens long."""
    return (4 if lora else 6) * shape.matmul_params + 12 * shape.layers * shape.heads * shape.head_dim * context


def forward_flops(shape: Shape, tokens: float, head_positions: float, context: float) -> float:
    """Forward passes that run `tokens` through the body (attending to `context` keys on average)
    and project `head_positions` of them to the vocabulary."""
    body = 2 * (shape.matmul_params - shape.head_params) + 4 * shape.layers * shape.heads * shape.head_dim * context
    return tokens * body + head_positions * 2 * shape.head_params


# what an evaluate record's flops_per_token is, in words (ftgen.evaluate, benchmarks/gpu_check.py)
FORWARD_FLOPS_FORMULA = (
    "(forward_tokens * (2 (N - head) + 4 * layers * heads * head_dim * mean context length) "
    "+ head_positions * 2 head) / tokens; head = vocab x hidden"
)


def forward_flops_per_token(shape: Shape, context: float) -> float:
    """One token through the whole model, the head included (2N + attention)."""
    return forward_flops(shape, 1, 1, context)


def gpu_peak_flops(name: str) -> float | None:
    for key, tflops in GPU_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops * 1e12
    return None


def cpu_name() -> str:
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where there is none)."""
    try:
        match = re.search(r"^flags\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        match = None
    return set(match.group(1).split()) if match else set()


PROBE_SIZES = (1024, 512, 256)  # square matmul sides, largest first
PROBE_MM_S = 0.1  # the largest side whose one matmul is estimated to take at most this long


def probe_size(flops_per_s: float) -> int:
    """The matmul side the peak probe times: 1024 where one such matmul is quick at the rate a
    256^3 one ran, smaller where this dtype is slow on this CPU (bf16 without a bf16 unit runs at
    ~1 GFLOP/s: thirteen 1024^3 matmuls took 33 s, in every evaluate and fine-tune job)."""
    for n in PROBE_SIZES:
        if 2 * n**3 / flops_per_s <= PROBE_MM_S:
            return n
    return PROBE_SIZES[-1]


def _mm_seconds(a, b, repeats: int) -> float:
    import torch

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def cpu_matmul_probe(threads: int, bf16: bool) -> tuple[float, int]:
    """(FLOP/s, side): the best of ten square matmuls at this dtype (bf16 where the run uses it)
    with torch's current thread count `threads` (the cache key; the pool is not resized). The
    side is 1024 unless a 256^3 matmul shows that this dtype is slow here (`probe_size`), so the
    probe takes well under a second."""
    import torch

    dtype = torch.bfloat16 if bf16 else torch.float32
    small = torch.randn(256, 256, dtype=dtype)
    _mm_seconds(small, small, 3)  # warm-up: oneDNN picks and JIT-builds its kernel
    n = probe_size(2 * 256**3 / _mm_seconds(small, small, 3))
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    _mm_seconds(a, b, 3)  # warm-up at the probed side
    return 2 * n**3 / _mm_seconds(a, b, 10), n


def cpu_matmul_rate(threads: int, bf16: bool, probes: int = 3) -> tuple[float, list[float], int]:
    """(median FLOP/s, each probe's, side): `probes` fresh `cpu_matmul_probe`s at torch's current
    thread count `threads`. One probe is a sample of a drifting machine (41-80 GFLOP/s at 1 thread
    on an AVX2 EPYC); `ftgen estimate` compares this median on the CPU it runs on with the one
    benchmarks/cpu_speed.py recorded on its calibration CPU."""
    runs = [cpu_matmul_probe.__wrapped__(threads, bf16) for _ in range(probes)]
    samples = [flops for flops, _ in runs]
    return statistics.median(samples), samples, runs[0][1]


def cpu_peak_flops(threads: int, bf16: bool) -> float:
    """Measured, not looked up (CPUs have no datasheet peak that torch reaches): `cpu_matmul_probe`."""
    return cpu_matmul_probe(threads, bf16)[0]


def device_peak(device, bf16: bool) -> dict:
    """{"device", "peak_flops", "peak_source"} for a torch device (cuda: the datasheet table;
    cpu: measured at the current torch thread count)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = gpu_peak_flops(name)
        return {"device": name, "peak_flops": peak, "peak_source": "datasheet bf16 dense" if peak else "unknown device"}
    threads = torch.get_num_threads()
    flops, side = cpu_matmul_probe(threads, bf16)
    return {
        "device": f"{cpu_name()} ({threads} threads)",
        "peak_flops": flops,
        "peak_source": f"measured {'bf16' if bf16 else 'fp32'} {side}^3 matmul",
    }


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def utilization(tokens: float, seconds: float, flops_per_token: float, peak: dict, devices: int = 1) -> dict:
    """tokens/s, FLOPs per token, achieved FLOP/s and MFU against `devices` x the device peak."""
    rate = tokens / seconds if seconds > 0 else None
    achieved = rate * flops_per_token if rate is not None else None
    total_peak = peak["peak_flops"] * devices if peak.get("peak_flops") else None
    return {
        "tokens_per_s": round(rate, 1) if rate is not None else None,
        "flops_per_token": _sig(flops_per_token),
        "achieved_tflops": _sig(achieved / 1e12) if achieved is not None else None,
        "peak_tflops": _sig(total_peak / 1e12) if total_peak else None,
        "mfu": _sig(achieved / total_peak) if achieved is not None and total_peak else None,
        "devices": devices,
        **{k: peak[k] for k in ("device", "peak_source")},
    }
