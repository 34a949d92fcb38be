"""ftgen.dropout: the dropped positions drawn as geometric gaps, checked against nn.Dropout's
Bernoulli draws (rates, independence, the kept values' arithmetic) and inside a fine-tune."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from ftgen.dropout import SparseDropout, dropped_positions, sparse_lora_dropout
from test_train import RECIPE, _train


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 5000), p=st.floats(0, 1), seed=st.integers(0, 2**31 - 1))
def test_positions_are_distinct_sorted_and_in_range(n, p, seed):
    pos = dropped_positions(n, p, generator=torch.Generator().manual_seed(seed))
    assert pos.dtype == torch.long and pos.ndim == 1
    assert bool((pos >= 0).all()) and bool((pos < n).all())
    assert bool((pos[1:] > pos[:-1]).all())
    if p == 0:
        assert len(pos) == 0
    if p == 1:
        assert len(pos) == n


@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_positions_follow_iid_bernoulli(p):
    """Rate overall and in every block (so the end of the sequence is reached as often as the start),
    and pairs of neighbours dropped together at p^2 (independence), each within 5 standard errors
    of i.i.d. Bernoulli(p); nn.Dropout's own masks pass the same checks."""
    n, blocks = 1_000_000, 20
    g = torch.Generator().manual_seed(0)
    sparse = torch.zeros(n, dtype=torch.bool)
    sparse[dropped_positions(n, p, generator=g)] = True
    torch.manual_seed(0)
    dense = torch.nn.functional.dropout(torch.ones(n), p) == 0
    for mask in (sparse, dense):
        rate = mask.double().mean().item()
        assert abs(rate - p) < 5 * (p * (1 - p) / n) ** 0.5
        per_block = mask.view(blocks, -1).double().mean(1)
        assert (per_block - p).abs().max().item() < 5 * (p * (1 - p) * blocks / n) ** 0.5
        both = (mask[1:] & mask[:-1]).double().mean().item()
        assert abs(both - p * p) < 5 * (p * p * (1 - p * p) / n) ** 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kept_values_and_gradients_as_nn_dropout(dtype):
    """Where both keep a value it is the same number (ATen's CPU dropout multiplies by a mask
    holding 1 / (1 - p) in the input's dtype); the gradient is that factor where kept, 0 where
    dropped."""
    p = 0.05
    x = torch.randn(64, 96, dtype=dtype, requires_grad=True)
    torch.manual_seed(1)
    dense = torch.nn.Dropout(p).train()(x)
    sparse_layer = SparseDropout(p).train()
    out = sparse_layer(x)
    kept = (out != 0) & (dense != 0)
    assert kept.sum() > 0.85 * x.numel() and torch.equal(out[kept], dense[kept])
    out.sum().backward()
    grad = x.grad.float()
    assert torch.equal(grad[out != 0], torch.full_like(grad[out != 0], torch.tensor(1 / (1 - p), dtype=dtype).item()))
    assert bool((grad[(out == 0) & (x != 0)] == 0).all())
    assert torch.equal(sparse_layer.eval()(x), x)  # eval: the identity, as nn.Dropout
    assert torch.equal(SparseDropout(0.0).train()(x), x)
    assert not SparseDropout(1.0).train()(x).any()
    with pytest.raises(ValueError, match="not in"):
        SparseDropout(1.5)


def test_swaps_every_lora_dropout(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(tiny_model)
    layers = lm.config.num_hidden_layers
    lm = get_peft_model(lm, LoraConfig(r=4, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    assert sparse_lora_dropout(lm) == 2 * layers
    drops = [d for m in lm.modules() if hasattr(m, "lora_dropout") for d in m.lora_dropout.values()]
    assert len(drops) == 2 * layers and all(isinstance(d, SparseDropout) and d.p == 0.1 for d in drops)
    lm.train()
    lm(input_ids=torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([[1, 2, 3, 4]])).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lm.named_parameters() if "lora_B" in n)


def test_finetune_with_sparse_dropout_is_seeded(tiny_model, examples, tmp_path):
    """The recipe key reaches the adapters: the same seed trains identical weights, and other
    weights than nn.Dropout's masks do."""
    recipe = {**RECIPE, "lora": {**RECIPE["lora"], "dropout": 0.2}}
    runs = {
        name: _train(tiny_model, examples, tmp_path, name, {**recipe, "sparse_dropout": sparse})
        for name, sparse in (("sparse_a", True), ("sparse_b", True), ("dense", False))
    }
    w = {name: load_file(out / "adapter_model.safetensors") for name, out in runs.items()}
    assert all(torch.equal(w["sparse_a"][k], w["sparse_b"][k]) for k in w["sparse_a"])
    assert not all(torch.equal(w["sparse_a"][k], w["dense"][k]) for k in w["sparse_a"])
    manifest = json.loads((runs["sparse_a"] / "manifest.json").read_text())
    assert manifest["params"]["sparse_dropout"] is True
