"""`ftgen preflight`: hub datasets' columns, labels and split sizes checked on the first rows,
models' config / tokenizer / gated access, one table, non-zero exit on any failure; offline the
same dataset checks run on the fixtures and the run fails saying so."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import polars as pl
import pytest
import yaml

from ftgen import preflight as pf
from ftgen.study import load_yaml, rehearsal
from ftgen.study.rehearsal import hub_fixture
from helpers import REPO


def hub_repo(root, repo_id: str, splits: dict[str, list[dict]], config: str = "default", sizes=None):
    """A hub dataset repo in the hub's parquet layout: <config>/<split>-00000-of-00001.parquet and
    a README.md whose `configs:` name the files and whose `dataset_info` counts the rows (a second
    call adds a config)."""
    folder = root / repo_id
    (folder / config).mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        pl.DataFrame(rows).write_parquet(folder / config / f"{split}-00000-of-00001.parquet")
    readme = folder / "README.md"
    card = (
        yaml.safe_load(readme.read_text().split("---")[1]) if readme.exists() else {"configs": [], "dataset_info": []}
    )
    card["configs"].append(
        {"config_name": config, "data_files": [{"split": s, "path": f"{config}/{s}-*.parquet"} for s in splits]}
    )
    if sizes is False:  # a card without dataset_info: the split's size is not recorded
        readme.write_text(f"---\n{yaml.safe_dump(card)}---\n")
        return folder
    card["dataset_info"].append(
        {
            "config_name": config,
            "splits": [
                {"name": s, "num_bytes": 1000, "num_examples": (sizes or {}).get(s, len(rows))}
                for s, rows in splits.items()
            ],
        }
    )
    readme.write_text(f"---\n{yaml.safe_dump(card)}---\n")
    return folder


def polarity_rows(n: int = 30, labels=(0, 1)) -> list[dict]:
    return [
        {"content": f"review {i} was {'good' if i % 2 else 'bad'}", "label": labels[i % len(labels)]} for i in range(n)
    ]


def mc_rows(n: int = 12) -> list[dict]:
    return [
        {
            "id": f"q{i}",
            "question": f"which is {i}?",
            "choices": {"text": [f"a{i}", f"b{i}", f"c{i}"], "label": ["A", "B", "C"]},
            "answerKey": "ABC"[i % 3],
            "answerA": "x",
            "answerB": "y",
            "answerC": "z",
            "pick": str(1 + i % 3),
            "tags": [f"t{i}", "u"],
        }
        for i in range(n)
    ]


def sentiment_spec(name: str, *, train_size: int = 10, **source) -> dict:
    return {
        "name": "pol",
        "task": "sentiment",
        "task_type": "classification",
        "inputs": ["text"],
        "labels": ["negative", "positive"],
        "source": {
            "adapter": "hf",
            "name": name,
            "split": "train",
            "columns": {"text": "content"},
            "label": "label",
            "label_map": {"0": "negative", "1": "positive"},
            **source,
        },
        "split": {"seed": 0, "test": 4, "dev": 0, "fewshot": 2, "train": 0},
        "train_size": train_size,
    }


def mc_spec(name: str) -> dict:
    return {
        "name": "arc",
        "task": "multiple_choice_qa",
        "task_type": "multiple_choice",
        "inputs": ["question"],
        "labels": None,
        "source": {
            "adapter": "hf",
            "name": name,
            "split": "test",
            "columns": {"question": "question"},
            "options": "choices.text",
            "label": "answerKey",
            "label_index": 0,
            "label_keys": "choices.label",
            "id": "id",
        },
        "split": {"seed": 0, "test": 6, "dev": 0, "fewshot": 0, "train": 0},
        "train_size": 0,
    }


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """Three tiny repos under a fixture root that stands in for tests/fixtures/build/hub."""
    root = tmp_path / "hub"
    hub_repo(root, "acme/polarity", {"train": polarity_rows()}, sizes={"train": 30})
    hub_repo(root, "acme/arc", {"test": mc_rows()}, config="ARC-Challenge")
    hub_repo(root, "acme/rag", {"passages": [{"id": f"p{i}", "passage": f"text {i}"} for i in range(5)]}, config="text")
    hub_repo(
        root,
        "acme/rag",
        {"test": [{"id": i, "question": f"q{i}?", "answer": "a", "relevant": [f"p{i}"]} for i in range(3)]},
        config="qa",
    )
    monkeypatch.setattr(rehearsal, "HUB_FIXTURES", root)
    return root


def study(datasets: dict, corpora: dict | None = None, models: dict | None = None) -> dict:
    return {"study": "s", "datasets": datasets, "corpora": corpora or {}, "models": models or {}}


def corpus_spec(qa_columns: dict) -> dict:
    return {
        "name": "rag",
        "source": {
            "adapter": "hf",
            "corpus": {
                "name": "acme/rag",
                "config": "text",
                "split": "passages",
                "columns": {"id": "id", "text": "passage"},
            },
            "qa": {"name": "acme/rag", "config": "qa", "split": "test", "columns": qa_columns},
        },
    }


QA_COLUMNS = {"id": "id", "question": "question", "answers": "answer", "gold": "relevant"}


def rows_of(report) -> dict:
    return {c.name: c for c in report.datasets}


def test_every_form_of_column_and_label_checks_out_on_the_fixtures(hub):
    arc = mc_spec("acme/arc")
    arc["source"]["config"] = "ARC-Challenge"
    picked = mc_spec("acme/arc")
    picked["source"].update(
        config="ARC-Challenge",
        columns={"question": {"pick": ["answerA", "answerB", "answerC"], "index": "pick", "base": 1}},
        references={"column": "tags", "item": 0},
    )
    report = pf.run_preflight(
        [
            study(
                {"pol": sentiment_spec("acme/polarity"), "arc": arc, "picked": picked}, {"rag": corpus_spec(QA_COLUMNS)}
            )
        ],
        offline="HF_HUB_OFFLINE is set",
    )
    rows = rows_of(report)
    assert set(rows) == {"pol", "arc", "picked", "corpus rag (corpus)", "corpus rag (qa)"}
    for check in rows.values():
        assert (check.loads, check.columns, check.problem) == ("yes", "yes", ""), check
    assert rows["pol"].labels == "yes"
    assert rows["pol"].rows == "fixture 30 (needs 16)"  # a fixture's size is shown, not judged
    assert not report.passed  # offline never passes


def test_online_all_ok_rows_pass(hub):
    spec = sentiment_spec(str(hub / "acme/polarity"))
    report = pf.run_preflight([study({"pol": spec})], offline=None)
    (check,) = report.datasets
    assert (check.loads, check.rows, check.columns, check.labels, check.problem) == (
        "yes",
        "30 (needs 16)",
        "yes",
        "yes",
        "",
    )
    assert report.passed
    text = report.text()
    assert "| dataset | loads | rows | columns ok | labels ok | problem |" in text
    assert text.strip().splitlines()[-1] == "preflight passed"


def test_a_missing_column_is_named(hub):
    spec = sentiment_spec(str(hub / "acme/polarity"), columns={"text": "review"})
    bad_corpus = corpus_spec({**QA_COLUMNS, "gold": "gold_ids"})
    bad_corpus["source"]["corpus"]["name"] = str(hub / "acme/rag")
    bad_corpus["source"]["qa"]["name"] = str(hub / "acme/rag")
    report = pf.run_preflight([study({"pol": spec}, {"rag": bad_corpus})], offline=None)
    rows = rows_of(report)
    assert rows["pol"].columns == "NO"
    assert "'review' (source.columns.text)" in rows["pol"].problem and "'content'" in rows["pol"].problem
    assert rows["corpus rag (corpus)"].problem == ""
    assert rows["corpus rag (qa)"].columns == "NO" and "'gold_ids' (qa.columns.gold)" in rows["corpus rag (qa)"].problem
    assert not report.passed


def test_a_label_outside_the_label_map_fails(hub):
    hub_repo(hub, "acme/three", {"train": polarity_rows(labels=(0, 1, 2))})
    report = pf.run_preflight([study({"pol": sentiment_spec(str(hub / "acme/three"))})], offline=None)
    (check,) = report.datasets
    assert check.labels == "NO" and "['2']" in check.problem and "label_map" in check.problem
    # dropped labels are fine (SNLI's -1)
    spec = sentiment_spec(str(hub / "acme/three"), drop_labels=[2])
    assert pf.run_preflight([study({"pol": spec})], offline=None).passed


def test_too_few_rows_for_the_study(hub):
    spec = sentiment_spec(str(hub / "acme/polarity"), train_size=100)
    (check,) = pf.run_preflight([study({"pol": spec})], offline=None).datasets
    assert "has 30 rows, the study needs 106 (test 4 + fewshot 2 + train 100)" in check.problem
    # an official test split (test_split) is counted on its own
    hub_repo(hub, "acme/gsm", {"test": polarity_rows(5), "train": polarity_rows(40)})
    spec = sentiment_spec(str(hub / "acme/gsm"), test_split="test")
    (check,) = pf.run_preflight([study({"gsm": spec})], offline=None).datasets
    assert check.rows == "test 5 (needs 4); train 40 (needs 12)" and check.problem == ""
    # no size in the card: a split that ended within the streamed rows has the rows streamed
    hub_repo(hub, "acme/small", {"train": polarity_rows(5)}, sizes=False)
    (check,) = pf.run_preflight([study({"pol": sentiment_spec(str(hub / "acme/small"))})], offline=None).datasets
    assert check.rows == "5 (needs 16)" and "has 5 rows, the study needs 16" in check.problem
    (check,) = pf.run_preflight(
        [study({"pol": sentiment_spec(str(hub / "acme/small"))})], rows=5, offline=None
    ).datasets
    assert check.rows == "unknown (needs 16)" and check.problem == ""  # 5 of 5 streamed: it may hold more


def test_a_missing_fixture_is_its_row(hub):
    report = pf.run_preflight(
        [study({"pol": sentiment_spec("acme/polarity"), "gone": sentiment_spec("acme/absent")})], offline="test"
    )
    rows = rows_of(report)
    assert rows["pol"].problem == ""
    assert rows["gone"].loads == "NO" and "no fixture for hub dataset 'acme/absent'" in rows["gone"].problem


def test_offline_the_step_fails_and_says_so_first_and_last(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = {"llama": {"name": "meta-llama/Llama-2-7b-hf", "revision": None}}
    out = tmp_path / "out" / "preflight.md"
    with pytest.raises(SystemExit) as exit_:
        pf.preflight(spec=study({"pol": sentiment_spec("acme/polarity")}, models=models), out=str(out))
    assert exit_.value.code == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("HUB NOT REACHABLE (HF_HUB_OFFLINE is set)") and "fixtures" in lines[0]
    assert lines[-1].startswith("preflight FAILED: the hub was not reachable") and "fixtures" in lines[-1]
    assert "| llama | meta-llama/Llama-2-7b-hf | - | - | not checked (hub unreachable) |" in lines
    assert out.read_text().strip().splitlines() == lines


def test_gated_and_missing_models_say_what_to_do():
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    def raised(cls):
        inner = cls.__new__(cls)  # the hub's errors want an HTTP response
        Exception.__init__(inner, "403")
        try:
            try:
                raise inner
            except Exception as exc:
                raise OSError("You are trying to access a gated repo.") from exc
        except OSError as outer:
            return outer

    gated = pf.model_problem(raised(GatedRepoError), "meta-llama/Llama-2-7b-hf")
    assert "HF_TOKEN" in gated and "https://huggingface.co/meta-llama/Llama-2-7b-hf" in gated and "licence" in gated
    assert pf.model_problem(raised(RepositoryNotFoundError), "x/y").startswith("not found")


def test_the_hub_is_probed_once_and_a_connection_error_means_offline(monkeypatch):
    import huggingface_hub

    calls = []

    class Session:
        def __init__(self, error=None):
            self.error = error

        def head(self, url, timeout):
            calls.append((url, timeout))
            if self.error:
                raise self.error

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_session", lambda: Session(ConnectionError("Name or service not known")))
    why = pf.hub_unreachable()
    assert "did not answer (ConnectionError: Name or service not known)" in why
    assert calls[0][1] == pf.CONNECT_TIMEOUT
    monkeypatch.setattr(huggingface_hub, "get_session", lambda: Session())
    assert pf.hub_unreachable() is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert pf.hub_unreachable() == "HF_HUB_OFFLINE is set" and len(calls) == 2  # no probe when told


def test_a_gated_dataset_and_a_failing_model_are_named(hub, monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    def gated(*args, **kwargs):
        inner = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(inner, "403 Client Error")
        raise ConnectionError("could not load") from inner

    monkeypatch.setattr(pf.Reader, "rows", gated)
    (check,) = pf.run_preflight([study({"pol": sentiment_spec("acme/polarity")})], offline=None).datasets
    assert check.loads == "NO" and "https://huggingface.co/datasets/acme/polarity" in check.problem
    assert "HF_TOKEN" in check.problem

    import transformers

    def missing(*args, **kwargs):
        raise OSError("no such repo")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", missing)
    models = {"m": {"name": "acme/model", "revision": None}}
    report = pf.run_preflight([study({}, models=models)], offline=None)
    (model,) = report.models
    assert (model.config, model.tokenizer, model.problem) == ("NO", "-", "OSError: no such repo")
    assert not report.passed and report.text().strip().endswith("preflight FAILED: 1 problem(s)")


def test_study_params_follow_the_study_and_expand_studies_lists(hub, tmp_path):
    cfg = copy.deepcopy(load_yaml(REPO / "config/studies/smoke.yaml"))
    cfg["datasets"]["sent_food"]["source"] = sentiment_spec("acme/polarity")["source"]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    listing = tmp_path / "hpc.yaml"
    listing.write_text(yaml.safe_dump({"studies": [str(path)]}))
    (params,) = pf.study_params([str(listing)])
    assert list(params["datasets"]) == ["sent_food"] and params["models"] == {}
    assert params["datasets"]["sent_food"]["train_size"] == 12  # finetune.sizes: [12]
    (check,) = pf.run_preflight([params], offline="test").datasets
    assert check.rows == "fixture 30 (needs 20)" and check.problem == ""


def test_the_command_fails_offline_naming_the_unreachable_hub():
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "ftgen", "preflight", "--configfile", "config/studies/yang2024.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0
    lines = proc.stdout.strip().splitlines()
    assert "HUB NOT REACHABLE" in lines[0] and "hub was not reachable" in lines[-1], proc.stdout + proc.stderr


# one fixture of each GPU study: its fixtures have landed (tests/fixtures/hub/README.md)
FIXTURE_OF = {
    "yang2024": "EdinburghNLP/xsum",
    "barnett2024": "rag-datasets/rag-mini-bioasq",
    "gupta2025": "openai/gsm8k",
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.skipif(not hub_fixture(repo).is_dir(), reason="fixtures not yet present"))
        for name, repo in FIXTURE_OF.items()
    ],
)
def test_every_gpu_study_dataset_has_its_columns_and_labels_in_the_fixtures(name):
    report = pf.run_preflight(pf.study_params([str(REPO / f"config/studies/{name}.yaml")]), offline="test")
    assert report.datasets
    bad = [(c.name, c.problem) for c in report.datasets if c.loads != "yes" or c.columns != "yes" or c.problem]
    assert not bad
    assert all(c.labels in ("yes", "-") for c in report.datasets)
