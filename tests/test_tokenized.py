"""The tokenize step: prompt tokens masked, EOS appended; FTICL prompts carry k demonstrations,
never a test example or the example itself."""

import json

import pytest

from ftgen.data import load_examples
from ftgen.modeling import load_tokenizer
from ftgen.tokenized import tokenize_dataset
from helpers import PP


def test_tokenized_dataset_masks_prompt_and_appends_eos(tiny_model, examples, tmp_path):
    out = tmp_path / "tok"
    stats = tokenize_dataset(
        model=str(tiny_model),
        examples=str(examples),
        spec={"prompt": PP, "variant": "sft", "format": 0},
        tokenized=str(out),
    )
    from datasets import load_from_disk

    ds = load_from_disk(str(out / "dataset"))
    tok = load_tokenizer(tiny_model)
    row = ds["train"][0]
    target = [t for t in row["labels"] if t != -100]
    assert target[-1] == tok.eos_token_id and row["input_ids"][-len(target) :] == target
    assert row["labels"][0] == -100
    assert stats["train"]["examples"] == 16 and stats["dev"]["examples"] == 4
    assert (out / "manifest.json").exists()


@pytest.mark.parametrize("variant", ["fticl-fixed-k2", "fticl-random-k2", "fticl-retrieved-k2"])
def test_fticl_prompts_have_k_demos_never_test_or_self(tiny_model, examples, tmp_path, variant):
    out = tmp_path / "tok"
    tokenize_dataset(
        model=str(tiny_model),
        examples=str(examples),
        tokenized=str(out),
        spec={"prompt": {**PP, "max_length": 256}, "variant": variant, "format": 0, "demo_seed": 0},
    )
    used = json.loads((out / "demonstrations.json").read_text())
    test_ids = {r["id"] for r in load_examples(examples, "test")}
    from datasets import load_from_disk

    tok = load_tokenizer(tiny_model)
    ds = load_from_disk(str(out / "dataset"))["train"]
    for row in ds:
        assert len(used[row["id"]]) == 2 and row["id"] not in used[row["id"]]
        assert not test_ids & set(used[row["id"]])
        assert tok.decode(row["input_ids"]).count("### Input:") == 3  # 2 demonstrations + the example
