"""Model artifacts on the tiny random-init Llama: the prepared model's manifest and tokenizer, and a
local model source materialised as the same model."""

import json

import torch

from ftgen.modeling import bf16_supported, load_model, load_tokenizer


def test_tiny_model_artifact(tiny_model):
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert manifest["kind"] == "model" and manifest["n_params"] > 10_000 and manifest["code_revision"]
    tok = load_tokenizer(tiny_model)
    assert tok.eos_token and tok.pad_token and tok.padding_side == "left"
    assert isinstance(bf16_supported("cpu"), bool)


def test_local_model_source_is_materialised(tiny_model, tmp_path):
    from ftgen.modeling import prepare_model

    out = tmp_path / "local"
    prepare_model(spec={"source": "local", "path": str(tiny_model)}, model=str(out), log=lambda *_: None)
    a, b = load_model(tiny_model), load_model(out)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(a(ids).logits, b(ids).logits)
    assert json.loads((out / "manifest.json").read_text())["params"]["source"] == "local"
