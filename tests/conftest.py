"""Shared fixtures: a tiny random-init Llama, the tiny datasets several test files use (written at
test time), and a sharpened copy of the tiny model. Plain helpers are in helpers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import PP, SHARP_LABELS, copy_repo, mc_params, mc_rows, planned_jobs, sentiment_rows, write_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


TINY_SPEC = {
    "source": "tiny_random",
    "chat_template": False,
    "max_length": 64,
    "tiny": {"layers": 2, "hidden": 32, "heads": 2, "kv_heads": 1, "vocab_size": 384, "seed": 0},
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from ftgen.modeling import prepare_model

    out = tmp_path_factory.mktemp("model") / "tiny"
    prepare_model(spec=TINY_SPEC, model=str(out), log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def fresh_plan(tmp_path_factory):
    """`fresh_plan(*args)`: the jobs per rule `snakemake -n *args` plans in a copy of the repo where
    nothing has run (no data/cache/, no results/), planned once per session: a GPU study's plan
    takes 5-35 s of Snakemake's time, and several test files check the same one. The copy is
    read-only to its users; a test that writes configs makes its own (helpers.copy_repo)."""
    wd = copy_repo(tmp_path_factory, "fresh-plans")
    plans: dict[tuple[str, ...], dict[str, int]] = {}

    def plan(*args: str) -> dict[str, int]:
        if args not in plans:
            plans[args] = planned_jobs(wd, *args)
        return dict(plans[args])

    return plan


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    from ftgen.data import prepare_dataset

    tmp = tmp_path_factory.mktemp("ex")
    path = write_jsonl(tmp / "sent.jsonl", sentiment_rows(48))
    params = {
        "name": "sent",
        "task": "sentiment",
        "task_type": "classification",
        "inputs": ["text"],
        "labels": ["negative", "positive"],
        "source": {
            "adapter": "jsonl",
            "path": str(path),
            "columns": {"text": "text"},
            "label": "label",
            "group": "doc",
        },
        "split": {"seed": 0, "test": 8, "dev": 4, "fewshot": 4, "train": 16},
    }
    prepare_dataset(
        spec=params, examples=str(tmp / "examples.parquet"), card=str(tmp / "card.json"), manifest=str(tmp / "m.json")
    )
    return tmp / "examples.parquet"


@pytest.fixture(scope="module")
def tokenized(tiny_model, examples, tmp_path_factory):
    """The sentiment examples tokenized for SFT (the fine-tune tests' training set)."""
    from ftgen.tokenized import tokenize_dataset

    out = tmp_path_factory.mktemp("tok") / "tok"
    tokenize_dataset(
        model=str(tiny_model),
        examples=str(examples),
        spec={"prompt": PP, "variant": "sft", "format": 0},
        tokenized=str(out),
    )
    return out


@pytest.fixture
def mc_examples(tmp_path):
    from ftgen.data import prepare_dataset

    rows = [{**r, "gold": r["options"][0]} for r in mc_rows()]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    out = tmp_path / "mc.parquet"
    prepare_dataset(
        spec=mc_params(path), examples=str(out), card=str(tmp_path / "card.json"), manifest=str(tmp_path / "m.json")
    )
    return out


@pytest.fixture(scope="module")
def sharp_model(tiny_model, tmp_path_factory):
    """The tiny model with logits scaled into the 8-40 range of a trained LLM's, where a bf16 logit
    moves in steps of 1/16-1/4, and the two labels' output rows nearly equal: their scores differ
    by a few thousandths, as two plausible labels' do. Scored from bf16 logits, they tie."""
    import torch

    from ftgen.modeling import load_model, load_tokenizer

    model = load_model(tiny_model)
    tok = load_tokenizer(tiny_model)
    a, b = (tok(" " + lab, add_special_tokens=False)["input_ids"] for lab in SHARP_LABELS)
    assert len(a) == len(b) == 1
    torch.manual_seed(0)
    with torch.no_grad():
        w = model.get_output_embeddings().weight
        w.mul_(60.0)
        w[b[0]] = w[a[0]] + 0.002 * torch.randn_like(w[a[0]])
    out = tmp_path_factory.mktemp("sharp")
    model.save_pretrained(out)
    load_tokenizer(tiny_model).save_pretrained(out)
    return out
