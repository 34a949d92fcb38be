"""Model artifacts on the tiny random-init Llama: the prepared model's manifest and tokenizer, and a
local model source materialised as the same model."""

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from ftgen.modeling import BF16_MIN_SPEEDUP, bf16_supported, load_model, load_tokenizer


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


@pytest.mark.parametrize(
    ("family", "arch", "system_turn_ok"),
    [
        ("llama2", "LlamaForCausalLM", True),
        ("mistral", "MistralForCausalLM", False),
        ("mixtral", "MixtralForCausalLM", False),
    ],
)
def test_tiny_stand_ins_have_their_family_architecture_and_tokenizer(tmp_path, family, arch, system_turn_ok):
    """A rehearsal's stand-in for a hub family: its architecture (Mixtral: sparse MoE), a
    SentencePiece-kind tokenizer (<s> prepended, "▁" word marks, byte fallback: any text round
    trips) and the family's published chat template (Mistral's refuses a system turn)."""
    import jinja2

    from ftgen.modeling import prepare_model

    out = tmp_path / family
    spec = {"source": "tiny_random", "chat_template": True, "max_length": 2048, "tiny": {"family": family}}
    prepare_model(spec=spec, model=str(out), log=lambda *_: None)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [arch] and config["max_position_embeddings"] >= 2048
    if family == "mixtral":
        assert config["num_local_experts"] == 4 and config["num_experts_per_tok"] == 2
    tok = load_tokenizer(out)
    text = "Résumé: 日本 costs $5 — OK?"
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id == tok.convert_tokens_to_ids("<s>")
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert "<0xE6>" in tok.convert_ids_to_tokens(ids)  # 日 is not in the vocabulary: bytes
    assert tok.pad_token == tok.eos_token == "</s>"  # as prepare_model sets it for a hub model without one
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<s>[INST] Hi [/INST]"
    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    if system_turn_ok:
        assert "<<SYS>>" in tok.apply_chat_template(system, tokenize=False)
    else:
        with pytest.raises(jinja2.exceptions.TemplateError):
            tok.apply_chat_template(system, tokenize=False)
    model = load_model(out)
    assert type(model).__name__ == arch
    generated = model.generate(**tok(["Hi"], return_tensors="pt"), max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert generated.shape[1] == len(tok("Hi").input_ids) + 3


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="oneDNN ISA names are x86's")
def test_bf16_auto_measures_instead_of_trusting_cpu_flags():
    """With oneDNN kept off the bf16 instructions, bf16 matmuls run slower than fp32 whatever
    /proc/cpuinfo lists, and `bf16: auto` must then pick fp32."""
    code = (
        "from ftgen.modeling import bf16_matmul_speedup, bf16_supported, resolve_bf16; "
        "print(bf16_matmul_speedup(), bf16_supported('cpu'), resolve_bf16('auto', 'cpu'))"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    speedup, supported, resolved = out.split()
    assert float(speedup) < BF16_MIN_SPEEDUP and supported == resolved == "False"
