"""Shared fixtures: a tiny random-init Llama and tiny datasets written at test time."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ftgen.study import Study, load_yaml  # noqa: E402

TINY_SPEC = {"source": "tiny_random", "chat_template": False, "max_length": 64,
             "tiny": {"layers": 2, "hidden": 32, "heads": 2, "kv_heads": 1, "vocab_size": 384, "seed": 0}}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from ftgen.modeling import prepare_model

    out = tmp_path_factory.mktemp("model") / "tiny"
    prepare_model(spec=TINY_SPEC, model=str(out), log=lambda *_: None)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def sentiment_rows(n: int = 40) -> list[dict]:
    words = [("good", "positive"), ("great", "positive"), ("bad", "negative"), ("awful", "negative")]
    return [{"id": f"r{i}", "doc": f"d{i // 2}", "text": f"item {i} was {words[i % 4][0]}", "label": words[i % 4][1]}
            for i in range(n)]


def smoke_study() -> Study:
    return Study(load_yaml(REPO / "config/studies/smoke.yaml"), source="smoke.yaml")


@pytest.fixture
def sentiment_params(tmp_path) -> dict:
    path = write_jsonl(tmp_path / "sent.jsonl", sentiment_rows())
    return {
        "name": "sent", "task": "sentiment", "task_type": "classification", "inputs": ["text"],
        "labels": ["negative", "positive"],
        "source": {"adapter": "jsonl", "path": str(path), "columns": {"text": "text"}, "label": "label",
                   "group": "doc", "id": "id"},
        "split": {"seed": 0, "test": 8, "dev": 4, "fewshot": 4, "train": 20},
        "asset": None,
    }
