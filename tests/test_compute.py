"""ftgen.compute against its references: parameter counts of the instantiated model, and FLOPs
as torch's own FlopCounterMode counts them on a real forward / backward pass."""

from __future__ import annotations

import json
import re

import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from ftgen import compute

CONFIGS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": True}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"num_key_value_heads": 2}),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", {"num_local_experts": 4, "num_experts_per_tok": 2}),
}
ARCH = {
    "vocab_size": 300,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
}


def build(family: str):
    config_cls, model_cls, extra = CONFIGS[family]
    # eager attention: torch's flop counter does not see the CPU sdpa kernel's matmuls
    config = getattr(transformers, config_cls)(**{**ARCH, **extra}, attn_implementation="eager")
    torch.manual_seed(0)
    return getattr(transformers, model_cls)(config).eval(), config.to_dict()


@pytest.mark.parametrize("family", list(CONFIGS))
def test_parameter_count_matches_the_instantiated_model(family):
    model, config = build(family)
    assert compute.model_shape(config).params == sum(p.numel() for p in model.parameters())


def test_published_parameter_counts():
    smollm2 = {  # HuggingFaceTB/SmolLM2-135M-Instruct config.json: 134,515,008 parameters
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    }
    llama2 = {  # meta-llama/Llama-2-7b-hf: 6,738,415,616 parameters
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "vocab_size": 32000,
    }
    assert compute.model_shape(smollm2).params == 134_515_008
    assert compute.model_shape(llama2).params == 6_738_415_616


# not mixtral: its experts run as grouped/indexed kernels that the flop counter does not count
@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_forward_flops_match_torch_flop_counter(family):
    model, config = build(family)
    shape, tokens = compute.model_shape(config), 48
    ids = torch.randint(0, 300, (1, tokens))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids)
    predicted = compute.forward_flops_per_token(shape, context=tokens) * tokens
    # the formula leaves out norms, softmax and the router's top-k (not matmuls): a few percent
    assert counter.get_total_flops() == pytest.approx(predicted, rel=0.03)


@pytest.mark.parametrize("lora", [False, True])
def test_training_flops_match_torch_flop_counter(lora):
    model, config = build("llama")
    shape, tokens = compute.model_shape(config), 48
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    model.train()
    ids = torch.randint(0, 300, (1, tokens))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    predicted = compute.train_flops_per_token(shape, context=tokens, lora=lora) * tokens
    # r=2 adapters on a 64-wide model are ~6% of its matmuls; at 7B scale they are ~0.1%
    assert counter.get_total_flops() == pytest.approx(predicted, rel=0.08)


def test_utilization_and_peaks():
    peak = {"device": "NVIDIA H100 80GB HBM3", "peak_flops": compute.gpu_peak_flops("NVIDIA H100 80GB HBM3")}
    peak["peak_source"] = "datasheet"
    row = compute.utilization(tokens=1000, seconds=2, flops_per_token=6e9, peak=peak, devices=8)
    assert row["tokens_per_s"] == 500
    assert row["mfu"] == pytest.approx(500 * 6e9 / (8 * 989e12), rel=1e-3)
    assert compute.gpu_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert compute.gpu_peak_flops("NVIDIA A10") == 125e12
    assert compute.gpu_peak_flops("Some Future GPU") is None
    cpu = compute.device_peak("cpu", bf16=False)
    assert cpu["peak_flops"] > 1e9 and "threads" in cpu["device"]
    assert re.fullmatch(r"measured fp32 (1024|512|256)\^3 matmul", cpu["peak_source"])


def test_the_cpu_peak_probe_shrinks_where_the_dtype_is_slow():
    """A dtype this CPU has no unit for (bf16 on AVX2: ~1.2 GFLOP/s here) is timed on small
    matmuls: one 1024^3 bf16 matmul took 2.5 s, and every evaluate and fine-tune job probed 13."""
    assert compute.probe_size(100e9) == 1024  # fp32 on 2 AVX2 cores: 90 GFLOP/s
    assert compute.probe_size(1.2e9) == 256
    assert compute.probe_size(5e9) == 512
    sides = [compute.probe_size(rate) for rate in (1e8, 1e9, 3e9, 1e10, 3e10, 1e12)]
    assert sides == sorted(sides)  # faster never means a smaller probe
    for rate in (1e8, 1e9, 3e9, 1e10, 3e10, 1e12):  # one matmul stays short unless even 256^3 is slow
        side = compute.probe_size(rate)
        assert side == 256 or 2 * side**3 / rate <= compute.PROBE_MM_S


def test_compute_table_sums_tokens_time_and_flops(tmp_path):
    """Rates of a model's evaluation come from its cells' summed tokens, time and FLOPs (not a mean
    of per-cell rates); a cell without a record (API model) is counted as left out."""
    from ftgen.report.compute import compute_table

    peak = {"device": "NVIDIA A100-SXM4-80GB", "peak_flops": 312e12, "peak_source": "datasheet"}
    ft = tmp_path / "sent.sft.f0.n100.s0"
    ft.mkdir()
    rec = compute.utilization(8e6, 100.0, 6e9, peak, devices=8)
    (ft / "manifest.json").write_text(json.dumps({"wall_time_s": 100.0, "compute": rec}))
    scores = []
    for i, (tokens, wall, fpt) in enumerate([(1000, 1.0, 2e9), (3000, 4.0, 3e9)]):
        cell = {
            "cell": {"model_tag": "base"},
            "wall_time_s": wall,
            "compute": compute.utilization(tokens, wall, fpt, peak),
        }
        scores.append(tmp_path / f"c{i}.json")
        scores[-1].write_text(json.dumps(cell))
    scores.append(tmp_path / "api.json")
    scores[-1].write_text(json.dumps({"cell": {"model_tag": "base"}, "wall_time_s": 1.0}))
    table = compute_table(
        finetuned=[str(ft)], scores=[str(p) for p in scores], md=str(tmp_path / "c.md"), csv=str(tmp_path / "c.csv")
    )
    finetune, evaluate = table.rows(named=True)
    assert finetune["mfu"] == pytest.approx(8e4 * 6e9 / (8 * 312e12), rel=1e-3)
    assert evaluate["tokens"] == 4000 and evaluate["wall_s"] == 5.0 and evaluate["tokens_per_s"] == 800
    assert evaluate["flops_per_token"] == pytest.approx((1000 * 2e9 + 3000 * 3e9) / 4000, rel=1e-3)
    assert evaluate["mfu"] == pytest.approx((1000 * 2e9 + 3000 * 3e9) / 5 / 312e12, rel=1e-3)
    assert "1 jobs without a compute record" in (tmp_path / "c.md").read_text()


@pytest.mark.parametrize("call", ["option_loglikelihoods", "loglikelihoods", "greedy_generate"])
def test_eval_flops_match_torch_flop_counter(tiny_model, call):
    """What ftgen.generation says its forward passes ran, priced by compute.forward_flops, is what
    torch's flop counter counts on the same call: a prefix all contexts share, run once; options of
    several tokens on the contexts' cache; greedy decoding. Batches of one row: no padding (which
    the counter would count and the record leaves out)."""
    from transformers import AutoModelForCausalLM

    from ftgen import generation
    from ftgen.modeling import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="eager").eval()
    tok, shape = load_tokenizer(tiny_model), compute.model_shape(model.config.to_dict())
    gen = torch.Generator().manual_seed(0)
    shared = torch.randint(10, 200, (12,), generator=gen).tolist()
    contexts = [shared + torch.randint(10, 200, (n,), generator=gen).tolist() for n in (5, 9, 14, 20)]
    options = [[[21], [22, 23], [24, 25, 26]] for _ in contexts]
    counts: dict = {}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if call == "option_loglikelihoods":
            generation.option_loglikelihoods(model, tok.pad_token_id, contexts, options, 1, counts=counts)
        elif call == "loglikelihoods":
            requests = [(c, o) for c, opts in zip(contexts, options) for o in opts]
            generation.loglikelihoods(model, tok.pad_token_id, requests, 1, counts=counts)
        else:
            generation.greedy_generate(model, tok, contexts, 6, 1, stop=None, counts=counts)
    mean_context = sum(map(len, contexts)) / len(contexts)
    predicted = compute.forward_flops(shape, counts["forward_tokens"], counts["head_positions"], mean_context)
    # every prompt's tokens once, but the 12 shared ones only once in all
    prompts = {
        "option_loglikelihoods": [c + o[0][1:] + o[1][1:] + o[2][1:] for c, o in zip(contexts, options)],
        "loglikelihoods": [c + o for c, opts in zip(contexts, options) for o in opts],
        "greedy_generate": [c + [0] * 5 for c in contexts],  # at most 6 steps: 5 tokens fed back
    }[call]
    once = sum(map(len, prompts)) - len(shared) * (len(prompts) - 1)
    assert counts["forward_tokens"] == once or (call == "greedy_generate" and counts["forward_tokens"] <= once)
    # attention is priced at the mean context length; norms and softmax are not matmuls
    assert counter.get_total_flops() == pytest.approx(predicted, rel=0.05)
