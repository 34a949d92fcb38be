"""Hostile and careless inputs, as tables: every case names the file / field / line in its message
and leaves nothing half-written.

Part 1: config files (schema typos, duplicate YAML keys, syntax errors, system folders, prompt
placeholders, shell-hostile names) and file modes. Part 2: bad data files and damaged artifacts
(each row says what the code did before issue 14 in `before`).
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ftgen.artifacts import ArtifactError, atomic_dir, atomic_file, write_json
from ftgen.assets import AssetError
from ftgen.data import DataError, prepare_dataset
from ftgen.study import ConfigError, Study, load_yaml
from helpers import REPO, copy_repo, smk
from helpers import SMOKE as SMOKE_CONFIG  # config/studies/smoke.yaml; SMOKE below is its file name

HOSTILE = ["$(touch pwned)", "`touch pwned`", "a;touch pwned", "it's", 'say "hi"', "two words"]


def smoke_cfg():
    return copy.deepcopy(load_yaml(REPO / "config/studies/smoke.yaml"))


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("where", ["models", "assets", "tasks", "datasets"])
def test_names_that_become_paths_and_arguments_are_refused(where, name):
    cfg = smoke_cfg()
    key = next(iter(cfg.get(where) or {"x": {}}))
    section = cfg.setdefault(where, {})
    section[name] = copy.deepcopy(section.get(key, {"source": "tiny_random"}))
    with pytest.raises(ConfigError, match=where):
        Study(cfg, source="studies/hostile.yaml")


def test_outputs_get_the_users_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_file(tmp_path / "b.txt") as fh:
            fh.write("x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    for path in (tmp_path / "a.json", tmp_path / "b.txt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, oct(path.stat().st_mode)
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


# ----------------------------------------------------------------------------- issue 14: careless config
# Every case is a study file written to tmp_path and read as the Snakefile reads it (common.smk:
# `load_yaml` re-reads the file strictly, then `Study`): the error is a ConfigError naming the file
# and the field (or file:line for YAML-level mistakes), raised before any job is planned.
STUDIES = REPO / "config" / "studies"


def load_study_file(path, registry_dir=None):
    """What workflow/rules/common.smk does with a --configfile."""
    cfg = load_yaml(path)
    return Study(cfg, source=str(path), **({"registry_dir": registry_dir} if registry_dir else {}))


def _set(*keys, value):
    """A mutation setting cfg[k1][k2]...[kn] = value (creating dicts on the way)."""

    def mutate(cfg):
        node = cfg
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value

    return mutate


def _pop(*keys):
    def mutate(cfg):
        node = cfg
        for key in keys[:-1]:
            node = node[key]
        node.pop(keys[-1])

    return mutate


def _task_prompt(template, task="nli"):
    return _set("tasks", task, "prompts", 0, value=template)


def _source(dataset, source):
    return _set("datasets", dataset, "source", value=source)


SMOKE, RAG, S3FT = "smoke.yaml", "smoke-rag.yaml", "smoke-s3ft.yaml"
HF_SOURCE = {
    "adapter": "hf",
    "name": "stanfordnlp/sst2",
    "split": "train",
    "columns": {"text": "sentence"},
    "label": "label",
}
BAD_CONFIGS = [
    # --- keys the schema did not check: misspelt, they were silently ignored (failed before)
    (
        "source_group_typo_jsonl",
        SMOKE,
        _set("datasets", "sent_food", "source", "grup", value="doc"),
        ["datasets.sent_food.source.grup", "adapter jsonl", "did you mean 'group'"],
    ),
    (
        "source_typo_hf",
        SMOKE,
        _source("sent_food", {**HF_SOURCE, "lable": "label"}),
        ["datasets.sent_food.source.lable", "adapter hf"],
    ),
    (
        "source_typo_bigbench",
        SMOKE,
        _source("sent_food", {"adapter": "bigbench", "asset": "bigbench", "task": "x", "input_feild": "text"}),
        ["datasets.sent_food.source.input_feild", "adapter bigbench", "did you mean 'input_field'"],
    ),
    (
        "source_typo_vader",
        SMOKE,
        _source("sent_food", {"adapter": "vader", "asset": "vadersentiment", "domian": "tweets"}),
        ["datasets.sent_food.source.domian", "adapter vader"],
    ),
    (
        "source_typo_squad",
        SMOKE,
        _source("qg_home", {"adapter": "squad", "asset": "bigbench", "file": "f.json", "mdoe": "qa"}),
        ["datasets.qg_home.source.mdoe", "adapter squad"],
    ),
    (
        "source_typo_csv",
        SMOKE,
        _source("sent_food", {"adapter": "csv", "path": "x.csv", "delimeter": ";"}),
        ["datasets.sent_food.source.delimeter", "adapter csv", "did you mean 'delimiter'"],
    ),
    (
        "source_key_of_another_adapter",
        SMOKE,
        _source("sent_food", {"adapter": "jsonl", "path": "x.jsonl", "test_split": "test"}),
        ["datasets.sent_food.source.test_split", "adapter jsonl"],
    ),
    (
        "source_typo_rag",
        RAG,
        _set("datasets", "rag_zoo", "source", "retriever", value="dense"),
        ["datasets.rag_zoo.source.retriever", "adapter rag"],
    ),
    (
        "source_bad_column_spec",
        SMOKE,
        _set("datasets", "sent_food", "source", "columns", value={"text": {"colum": "text"}}),
        ["datasets.sent_food.source.columns.text"],
    ),
    (
        "source_missing_required",
        SMOKE,
        _source("sent_food", {"adapter": "hf", "split": "train"}),
        ["datasets.sent_food.source", "'name' is a required property", "adapter hf"],
    ),
    (
        "corpus_source_typo",
        RAG,
        _set("rag", "corpora", "zoo", "source", "pasages", value="p.jsonl"),
        ["rag.corpora.zoo.source.pasages", "corpus adapter jsonl"],
    ),
    (
        "dataset_split_typo",
        SMOKE,
        _set("datasets", "nli_a", "spilt", value={"test": 3}),
        ["datasets.nli_a.spilt", "did you mean 'split'"],
    ),
    (
        "model_key_typo",
        SMOKE,
        _set("models", "tiny", "max_lenght", value=64),
        ["models.tiny.max_lenght", "model source tiny_random", "did you mean 'max_length'"],
    ),
    (
        "model_key_of_another_source",
        SMOKE,
        _set("models", "tiny", "revision", value="main"),
        ["models.tiny.revision", "model source tiny_random"],
    ),
    ("tiny_architecture_typo", SMOKE, _set("models", "tiny", "tiny", "layer", value=3), ["models.tiny.tiny.layer"]),
    (
        "override_key_typo",
        SMOKE,
        _set("finetune", "overrides", value={"nli_a": {"lerning_rate": 0.1}}),
        ["finetune.overrides.nli_a.lerning_rate", "did you mean 'learning_rate'"],
    ),
    ("lora_key_typo", SMOKE, _set("finetune", "recipe", "lora", "rank", value=8), ["finetune.recipe.lora.rank"]),
    # --- types checked before any job (failed inside the Trainer before)
    (
        "override_epochs_not_a_number",
        SMOKE,
        _set("finetune", "overrides", value={"nli_a": {"epochs": "two"}}),
        ["finetune.overrides.nli_a.epochs", "'two' is not of type 'number'"],
    ),
    (
        "override_bad_method",
        SMOKE,
        _set("finetune", "overrides", value={"nli_a": {"method": "qlora"}}),
        ["finetune.overrides.nli_a.method"],
    ),
    # --- folders the pipeline must never write into (accepted before)
    ("results_dir_root", SMOKE, _set("results_dir", value="/"), ["results_dir", "system folder"]),
    ("cache_dir_etc", SMOKE, _set("cache_dir", value="/etc"), ["cache_dir", "system folder"]),
    ("cache_dir_inside_etc", SMOKE, _set("cache_dir", value="/etc/ftgen"), ["cache_dir", "inside /etc"]),
    ("results_dir_usr", SMOKE, _set("results_dir", value="/usr/"), ["results_dir", "/usr"]),
    ("results_dir_home", SMOKE, _set("results_dir", value=os.path.expanduser("~")), ["results_dir", "home folder"]),
    ("results_dir_tilde", SMOKE, _set("results_dir", value="~/results"), ["results_dir", "not expanded"]),
    ("results_dir_empty", SMOKE, _set("results_dir", value=""), ["results_dir"]),
    ("judge_cache_dir_root", RAG, _set("judge", "cache_dir", value="/"), ["judge.cache_dir", "system folder"]),
    # --- prompt placeholders: only plain {name} of the inputs (failed at tokenize before)
    (
        "placeholder_attribute",
        SMOKE,
        _task_prompt("{premise.text} {hypothesis}"),
        ["tasks.nli.prompts.0", "{premise.text}"],
    ),
    ("placeholder_index", SMOKE, _task_prompt("{premise[0]} {hypothesis}"), ["tasks.nli.prompts.0", "{premise[0]}"]),
    ("placeholder_conversion", SMOKE, _task_prompt("{premise!r} {hypothesis}"), ["tasks.nli.prompts.0", "{premise!r}"]),
    (
        "placeholder_format_spec",
        SMOKE,
        _task_prompt("{premise:>5} {hypothesis}"),
        ["tasks.nli.prompts.0", "{premise:>5}"],
    ),
    ("placeholder_positional", SMOKE, _task_prompt("{} {hypothesis}"), ["tasks.nli.prompts.0", "{}"]),
    (
        "placeholder_unbalanced_open",
        SMOKE,
        _task_prompt("{premise} {hypothesis"),
        ["tasks.nli.prompts.0", "expected '}'"],
    ),
    ("placeholder_lone_close", SMOKE, _task_prompt("{premise} } {hypothesis}"), ["tasks.nli.prompts.0", "Single '}'"]),
    (
        "judge_form_prompt_unknown_placeholder",
        RAG,
        _set("judge", "form_prompt", value="{question} {answr}: {name}"),
        ["judge.form_prompt", "['answr']"],
    ),
    (
        "judge_steps_prompt_bad_placeholder",
        RAG,
        _set("judge", "steps_prompt", value="{definition.text}"),
        ["judge.steps_prompt", "{definition.text}"],
    ),
    (
        "s3ft_paraphrase_prompt_unknown_placeholder",
        S3FT,
        _set("s3ft", "paraphrase_prompt", value="{task} {answer}"),
        ["s3ft.paraphrase_prompt", "['answer']"],
    ),
    # --- sections that were already strict (worked before; kept in the table)
    ("judge_key_typo", RAG, _set("judge", "temprature", value=0.5), ["judge.temprature", "did you mean 'temperature'"]),
    ("rag_key_typo", RAG, _set("rag", "retriver", value="bm25"), ["rag.retriver"]),
    (
        "s3ft_key_typo",
        S3FT,
        _set("s3ft", "judges", "math_word_problem", "treshold", value=50),
        ["s3ft.judges.math_word_problem.treshold"],
    ),
    (
        "evaluate_key_typo",
        SMOKE,
        _set("evaluate", "batchsize", value=4),
        ["evaluate.batchsize", "did you mean 'batch_size'"],
    ),
    ("split_key_typo", SMOKE, _set("split", "fewshots", value=2), ["split.fewshots", "did you mean 'fewshot'"]),
    ("resources_key_typo", SMOKE, _set("resources", "finetune", "mem_gb", value=2), ["resources.finetune.mem_gb"]),
    ("slurm_key_typo", SMOKE, _set("slurm", "acount", value="x"), ["slurm.acount", "did you mean 'account'"]),
    ("task_key_typo", SMOKE, _set("tasks", "nli", "promts", value={0: "{premise}"}), ["tasks.nli.promts"]),
    ("unknown_top_level_key", SMOKE, _set("unknown_key", value=1), ["unknown_key"]),
    (
        "unknown_task",
        SMOKE,
        _set("datasets", "nli_a", "task", value="translation"),
        ["datasets.nli_a.task: unknown task 'translation'"],
    ),
    (
        "unknown_adapter",
        SMOKE,
        _set("datasets", "nli_a", "source", "adapter", value="xml"),
        ["datasets.nli_a.source.adapter: unknown dataset adapter 'xml'"],
    ),
    (
        "unknown_dataset_in_train_on",
        SMOKE,
        _set("finetune", "train_on", value=["nope"]),
        ["finetune.train_on: unknown dataset 'nope'"],
    ),
    ("bad_method_enum", SMOKE, _set("finetune", "recipe", "method", value="qlora"), ["finetune.recipe.method"]),
    ("missing_split_key", SMOKE, _pop("split", "test"), ["split", "'test' is a required property"]),
    ("bad_shots", SMOKE, _set("evaluate", "shots", value=[5]), ["evaluate.shots"]),
    (
        "deepspeed_config_missing",
        SMOKE,
        _set("finetune", "recipe", "deepspeed", value="config/deepspeed/zero9.json"),
        ["finetune.recipe.deepspeed: no DeepSpeed config"],
    ),
]


@pytest.mark.parametrize("base, mutate, expected", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_a_careless_study_file_names_file_and_field(tmp_path, base, mutate, expected):
    cfg = copy.deepcopy(load_yaml(STUDIES / base))
    mutate(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_study_file(path)
    msg = str(err.value)
    assert str(path) in msg, msg
    for part in expected:
        assert part in msg, f"{part!r} not in:\n{msg}"


def _dup_dataset(text):
    """`nli_a` written twice under datasets (the last silently won): the second one's line."""
    dup = "  nli_a:\n    task: nli\n    source: {adapter: jsonl, path: tests/data/nli_b.jsonl}\n"
    text = text.replace("  nli_b:\n", dup + "  nli_b:\n", 1)
    return text, [i for i, line in enumerate(text.splitlines(), 1) if line == "  nli_a:"][1]


def _dup_source_key(text):
    line = "    source: {adapter: jsonl, path: tests/data/nli_a.jsonl, path: tests/data/nli_b.jsonl}"
    lines = text.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("    source:") and "nli_a.jsonl" in x)
    lines[at] = line
    return "\n".join(lines) + "\n", at + 1


def _dup_top_level(text):
    return text + "study: other\n", len(text.splitlines()) + 1


def _syntax_error(text):
    lines = text.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("split:"))
    lines[at] = "split: {seed: 0, test: 6, dev: 0, fewshot: 2, train: 16"  # unclosed flow mapping
    return "\n".join(lines) + "\n", None


def _tab_indent(text):
    lines = text.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("  tiny:"))
    lines[at + 1] = "\t" + lines[at + 1].lstrip()
    return "\n".join(lines) + "\n", at + 2


YAML_MISTAKES = [
    ("duplicate_dataset_key", _dup_dataset, ["duplicate key 'nli_a'"]),
    ("duplicate_key_inside_a_source", _dup_source_key, ["duplicate key 'path'"]),
    ("duplicate_top_level_key", _dup_top_level, ["duplicate key 'study'"]),
    ("yaml_syntax_error", _syntax_error, ["invalid YAML"]),
    ("yaml_tab_indentation", _tab_indent, ["invalid YAML"]),
    ("empty_file", lambda text: ("", None), ["file is empty"]),
    ("comments_only", lambda text: ("# nothing here\n", None), ["file is empty"]),
    ("top_level_not_a_mapping", lambda text: ("- study: smoke\n", 1), ["expected a mapping"]),
]


@pytest.mark.parametrize("edit, expected", [c[1:] for c in YAML_MISTAKES], ids=[c[0] for c in YAML_MISTAKES])
def test_a_yaml_mistake_names_file_and_line(tmp_path, edit, expected):
    text, line = edit((STUDIES / SMOKE).read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_study_file(path)
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    if line is not None:
        assert msg.startswith(f"{path}:{line}:"), msg
    elif "invalid YAML" in expected:  # a syntax error: some line of the file
        assert re.match(rf"{re.escape(str(path))}:\d+: ", msg), msg
    for part in expected:
        assert part in msg, f"{part!r} not in:\n{msg}"


def test_a_registry_entry_obeys_the_study_schema(tmp_path):
    """A misspelt key in config/registry/datasets.yaml is reported in that file, for the
    datasets a study uses (the catalog merges into the study's datasets)."""
    import shutil

    registry = tmp_path / "registry"
    shutil.copytree(REPO / "config" / "registry", registry)
    catalog = registry / "datasets.yaml"
    catalog.write_text(catalog.read_text().replace("domain: tweets", "domian: tweets", 1))
    cfg = smoke_cfg()
    cfg["datasets"]["vader_tweets"] = None
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        load_study_file(path, registry_dir=registry)
    assert str(catalog) in str(err.value) and "datasets.vader_tweets.source.domian" in str(err.value), str(err.value)
    (registry / "tasks.yaml").write_text((registry / "tasks.yaml").read_text() + "nli: {}\n")
    catalog.write_text(catalog.read_text().replace("domian: tweets", "domain: tweets", 1))
    with pytest.raises(ConfigError, match=rf"{re.escape(str(registry / 'tasks.yaml'))}:\d+: duplicate key 'nli'"):
        load_study_file(path, registry_dir=registry)


def test_plain_placeholders_and_literal_braces_pass():
    from ftgen.study.checks import check_placeholders

    assert check_placeholders("{premise} {{not a field}} {labels}", ["premise", "labels"], "w") == {"premise", "labels"}
    for template in ("{premise.x}", "{premise[0]}", "{premise!s}", "{premise:5}", "{}", "{0}", "{", "}", "{premise"):
        with pytest.raises(ConfigError, match="^w: "):
            check_placeholders(template, ["premise"], "w")


def test_a_duplicate_key_stops_snakemake_before_any_job(tmp_path_factory):
    """Snakemake parses --configfile itself (a repeated key: the last silently wins); common.smk
    re-reads it with the strict loader, so `snakemake -n` stops with file:line."""
    wd = copy_repo(tmp_path_factory, "dup-key")
    text, line = _dup_dataset((wd / "config/studies/smoke.yaml").read_text())
    study = wd / "config/studies/dup.yaml"
    study.write_text(text)
    proc = smk(wd, "-n", "--configfile", "config/studies/dup.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"config/studies/dup.yaml:{line}: duplicate key 'nli_a'" in out, out[-3000:]
    assert "Job stats" not in out and not (wd / "results").exists()


# ============================================================================ part 2: data and artifacts
# Each case builds its inputs under tmp_path and returns the call to make and the outputs that call
# must not leave behind; the row gives the error type and the fragments its message must contain
# ({tmp} = tmp_path): the file, and the line or field. `before` says what the code did before
# issue 14: "worked" (the same error), or a raw Python error (UnicodeDecodeError, AttributeError,
# SafetensorError, JSONDecodeError ...), a hub lookup of a mistyped folder, an error naming no
# file, or nothing.
TINY = {
    "source": "tiny_random",
    "chat_template": False,
    "max_length": 64,
    "tiny": {"layers": 2, "hidden": 32, "heads": 2, "kv_heads": 1, "vocab_size": 384, "seed": 0},
}
BB = "bigbench-1.0.0/bigbench/benchmark_tasks"
WORDS = [("good", "positive"), ("great", "positive"), ("bad", "negative"), ("awful", "negative")]


# ----------------------------------------------------------------------------- builders
def rows(n: int = 40) -> list[dict]:
    return [
        {"id": f"r{i}", "doc": f"d{i // 2}", "text": f"item {i} was {WORDS[i % 4][0]}", "label": WORDS[i % 4][1]}
        for i in range(n)
    ]


def jsonl_bytes(items: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in items)


def with_line(lineno: int, raw: bytes, items: list[dict] | None = None) -> bytes:
    """JSONL bytes of `items` with line `lineno` (1-based) replaced by `raw`."""
    lines = jsonl_bytes(items or rows()).splitlines(keepends=True)
    lines[lineno - 1] = raw + b"\n"
    return b"".join(lines)


def sentiment(path: Path, adapter: str = "jsonl", **split) -> dict:
    return {
        "name": "sent",
        "task": "sentiment",
        "task_type": "classification",
        "inputs": ["text"],
        "labels": ["negative", "positive"],
        "source": {
            "adapter": adapter,
            "path": str(path),
            "columns": {"text": "text"},
            "label": "label",
            "group": "doc",
            "id": "id",
        },
        "split": {"seed": 0, "test": 8, "dev": 4, "fewshot": 4, "train": 20, **split},
        "asset": None,
    }


def prepare(tmp: Path, params: dict, asset: Path | None = None):
    out = tmp / "out"
    outputs = [out / "examples.parquet", out / "card.json", out / "manifest.json"]
    paths = dict(zip(("examples", "card", "manifest"), map(str, outputs)))
    return (
        lambda: prepare_dataset(spec=params, asset=str(asset) if asset else None, **paths, log=lambda *_: None)
    ), outputs


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def bigbench(tmp: Path, task_json: bytes):
    sdist = tmp / "bigbench-1.0.0.tar.gz"
    sdist.write_bytes(tar_gz({f"{BB}/toy/task.json": task_json}))
    params = {
        "name": "toy",
        "task": "nli",
        "task_type": "classification",
        "inputs": ["premise", "hypothesis"],
        "labels": ["entailment", "neutral", "contradiction"],
        "source": {
            "adapter": "bigbench",
            "asset": "bigbench",
            "task": "toy",
            "input_regex": r"^(?P<premise>.*)\nClaim: (?P<hypothesis>.*)$",
            "label_map": {"True": "entailment", "False": "contradiction"},
        },
        "split": {"seed": 0, "test": 2, "dev": 0, "fewshot": 1, "train": 4},
        "asset": None,
    }
    return prepare(tmp, params, sdist)


def bb_task(n: int = 12) -> dict:
    return {
        "examples": [
            {
                "input": f"fact {i}.\nClaim: claim {i}.",
                "target_scores": {"True": int(i % 2 == 0), "False": int(i % 2 == 1)},
            }
            for i in range(n)
        ]
    }


def squad(tmp: Path, data: dict):
    sdist = tmp / "bigbench-1.0.0.tar.gz"
    sdist.write_bytes(tar_gz({f"{BB}/squad_shifts/toy.json": json.dumps(data).encode()}))
    params = {
        "name": "qg",
        "task": "qg",
        "task_type": "generation",
        "inputs": ["context", "answer"],
        "source": {"adapter": "squad", "asset": "bigbench", "file": "squad_shifts/toy.json"},
        "split": {"seed": 0, "test": 1, "dev": 0, "fewshot": 0, "train": 1},
        "asset": None,
    }
    return prepare(tmp, params, sdist)


def vader(tmp: Path, truth: bytes):
    inner = tar_gz({"hutto_ICWSM_2014/tweets_GroundTruth.txt": truth})
    sdist = tmp / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(tar_gz({"vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner}))
    params = {
        "name": "v",
        "task": "sentiment",
        "task_type": "classification",
        "inputs": ["text"],
        "labels": ["negative", "positive"],
        "source": {"adapter": "vader", "asset": "vadersentiment", "domain": "tweets"},
        "split": {"seed": 0, "test": 1, "dev": 0, "fewshot": 1, "train": 2},
        "asset": None,
    }
    return prepare(tmp, params, sdist)


def write_csv(path: Path, items: list[dict]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=["id", "doc", "text", "label"], lineterminator="\n")
    w.writeheader()
    w.writerows(items)
    return buf.getvalue().encode()


PASSAGES = [{"id": f"p{i}", "title": "t", "text": f"passage {i} about the zoo"} for i in range(6)]
QUESTIONS = [
    {"id": f"q{i}", "question": f"what is in passage {i}?", "answers": [f"thing {i}"], "gold": [f"p{i}"]}
    for i in range(6)
]


def corpus(tmp: Path, passages: bytes, questions: bytes):
    from ftgen.corpus import build_corpus

    (tmp / "passages.jsonl").write_bytes(passages)
    (tmp / "questions.jsonl").write_bytes(questions)
    params = {
        "name": "zoo",
        "seed": 0,
        "source": {
            "adapter": "jsonl",
            "passages": str(tmp / "passages.jsonl"),
            "questions": str(tmp / "questions.jsonl"),
        },
    }
    files = {"corpus": "corpus.parquet", "qa": "qa.parquet", "card": "card.json", "manifest": "manifest.json"}
    outputs = [tmp / "rag" / f for f in files.values()]
    paths = {name: str(tmp / "rag" / f) for name, f in files.items()}
    return (lambda: build_corpus(spec=params, **paths, log=lambda *_: None)), outputs


# ----------------------------------------------------------------------------- eval cells + reports
AGG_PARAMS = {
    "study": "t",
    "datasets": {"a1": {"task": "A"}},
    "primary_metric": {"A": "accuracy"},
    "labels": {"a1": ["x", "y"]},
    "bootstrap": 50,
    "bootstrap_seed": 0,
}
FT = "a1.sft.f0.n10.s0"


def eval_cell(root: Path, tag: str, dataset: str = "a1", n: int = 8) -> Path:
    from ftgen.metrics import score

    folder = root / "eval" / "m" / tag / dataset / "f0.k0"
    folder.mkdir(parents=True)
    golds = ["x", "y"] * (n // 2)
    preds = golds if tag == "base" else ["x"] * n
    corpus_scores, per = score(["accuracy"], preds, [[g] for g in golds], labels=["x", "y"])
    with open(folder / "predictions.jsonl", "w") as fh:
        for i, (p, g, s) in enumerate(zip(preds, golds, per)):
            fh.write(
                json.dumps({"id": f"{i:03d}", "group": f"g{i // 2}", "prediction": p, "references": [g], "scores": s})
                + "\n"
            )
    (folder / "scores.json").write_text(
        json.dumps(
            {
                "cell": {"model": "m", "model_tag": tag, "dataset": dataset, "format": 0, "shots": 0},
                "scores": corpus_scores,
                "n": n,
            }
        )
    )
    return folder / "scores.json"


def aggregate_case(tmp: Path, damage: Callable[[Path, Path], None]):
    from ftgen.report.transfer import aggregate

    base, ft = eval_cell(tmp, "base"), eval_cell(tmp, FT)
    damage(base, ft)
    outputs = [tmp / "tables" / f for f in ("transfer.parquet", "transfer.csv", "transfer.md", "manifest.json")]
    paths = dict(zip(("parquet", "csv", "md", "manifest"), map(str, outputs)))
    return (lambda: aggregate(scores=[str(base), str(ft)], spec=AGG_PARAMS, **paths)), outputs


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def judged_cell(root: Path, tag: str, n: int = 8) -> Path:
    folder = root / tag
    folder.mkdir(parents=True)
    with open(folder / "predictions.jsonl", "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {"id": f"q{i}", "group": f"p{i // 2}", "scores": {"exact_match": 100.0 * (i % 2), "token_f1": 50.0}}
                )
                + "\n"
            )
    with open(folder / "judgements.jsonl", "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps({"id": f"q{i}", "criterion": "accuracy", "score": 3.0 + (i % 2), "sample_mean": 3.0}) + "\n"
            )
    counts = {"requests": 1, "cache_hits": 0, "transport_retries": 0, "parse_retries": 0, "unavailable": 0}
    (folder / "judge.json").write_text(
        json.dumps(
            {
                "cell": {"model": "m", "dataset": "qa", "model_tag": tag},
                "judge": "j",
                "counts": counts,
                "criteria": {"accuracy": {"sample_sd_mean": 0.0, "krippendorff_alpha": 1.0}},
            }
        )
    )
    return folder / "judge.json"


def rag_case(tmp: Path, damage: Callable[[Path], None]):
    from ftgen.report.rag import rag_report

    cells = [judged_cell(tmp, "base"), judged_cell(tmp, "qa.sft.f0.n10.s0")]
    damage(cells[1].parent)
    recall = tmp / "recall.bm25.json"
    recall.write_text(
        json.dumps({"corpus": "qa", "retriever": "bm25", "passages": 4, "questions": 8, "recall@1": 50.0})
    )
    params = {
        "study": "t",
        "criteria": ["accuracy"],
        "score": "logprobs",
        "samples": 0,
        "bootstrap": 50,
        "bootstrap_seed": 0,
        "datasets": {"qa": "qa"},
    }
    outputs = [tmp / "tables" / f"rag.{k}" for k in ("parquet", "csv", "md", "manifest.json")]
    paths = dict(zip(("parquet", "csv", "md", "manifest"), map(str, outputs)))
    return (lambda: rag_report(judged=list(map(str, cells)), recall=[str(recall)], spec=params, **paths)), outputs


def s3ft_case(tmp: Path, damage: Callable[[Path, Path], None]):
    from ftgen.report.s3ft import s3ft_report
    from ftgen.report.transfer import aggregate

    paths = [eval_cell(tmp, tag, d) for tag in ("base", "a1.s3ft.f0.n10.s0") for d in ("a1", "g1")]
    params = {**AGG_PARAMS, "datasets": {"a1": {"task": "A"}, "g1": {"task": "A"}}, "labels": {}}
    transfer = tmp / "transfer.parquet"
    aggregate(
        scores=list(map(str, paths)),
        spec=params,
        parquet=str(transfer),
        csv=str(tmp / "t.csv"),
        md=str(tmp / "t.md"),
        manifest=str(tmp / "t.json"),
    )
    card = tmp / "card.json"
    card.write_text(json.dumps({"dataset": "a1", "self": 4, "paraphrase": 2, "gold": 2, "examples": 8}))
    damage(card, paths[3].with_name("predictions.jsonl"))  # the fine-tune's general-benchmark cell
    outputs = [tmp / f"s3ft.{k}" for k in ("csv", "md", "png", "pdf")]
    spec = {"study": "t", "general": ["g1"], "train_on": ["a1"], "bootstrap": 2000, "bootstrap_seed": 0}
    predictions = [str(p.with_name("predictions.jsonl")) for p in paths]
    files = dict(zip(("csv", "md", "png", "pdf"), map(str, outputs)))
    return (
        lambda: s3ft_report(table=str(transfer), cards=[str(card)], predictions=predictions, spec=spec, **files)
    ), outputs


# ----------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny base model folder and a LoRA adapter folder on it, built once."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftgen.modeling import prepare_model

    root = tmp_path_factory.mktemp("models")
    prepare_model(spec=TINY, model=str(root / "base"), log=lambda *_: None)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(root / "base"),
        LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj", "v_proj"]),
    )
    model.save_pretrained(root / "adapter")
    return root / "base", root / "adapter"


def damaged_model(tmp: Path, models, which: str, file: str):
    """Copy the base (`which="base"`) or adapter folder to tmp, truncate `file`, load it."""
    from ftgen.modeling import load_model, load_tokenizer

    base, adapter = models
    folder = tmp / which
    shutil.copytree(base if which == "base" else adapter, folder)
    truncate(folder / file)
    if file == "tokenizer.json":
        return (lambda: load_tokenizer(folder)), []
    return (lambda: load_model(folder, base_dir=None if which == "base" else base)), []


def cli(*argv: str):
    from ftgen.cli import main

    return (lambda: main(list(argv))), []


# ----------------------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    make: Callable  # (tmp_path, models) -> (call, outputs that must not exist afterwards)
    error: type[BaseException]
    expect: list[str] = field(default_factory=list)  # fragments of the message ({tmp} = tmp_path)
    before: str = "raw error"  # what the code before issue 14 did: "worked" = already this error
    models: bool = False  # needs the tiny model folders


def _p(t: Path) -> Path:
    return t / "sent.jsonl"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


CASES = [
    # --- dataset sources (ftgen.data)
    Case(
        "jsonl-not-utf8",
        lambda t, m: prepare(
            t,
            sentiment(
                _write(
                    _p(t), with_line(3, b'{"id": "r2", "doc": "d1", "text": "caf\xe9 was bad", "label": "negative"}')
                )
            ),
        ),
        DataError,
        ["sent.jsonl:3: not UTF-8 at byte 187 of the file (0xe9, column 39)"],
    ),
    Case(
        "jsonl-line-is-array",
        lambda t, m: prepare(t, sentiment(_write(_p(t), with_line(4, b"[1, 2]")))),
        DataError,
        ["sent.jsonl:4: line is not a JSON object (got an array)"],
        before="DataError: field 'text' missing",
    ),
    Case(
        "jsonl-line-is-string",
        lambda t, m: prepare(t, sentiment(_write(_p(t), with_line(2, b'"some text"')))),
        DataError,
        ["sent.jsonl:2: line is not a JSON object (got a string)"],
        before="TypeError",
    ),
    Case(
        "jsonl-line-is-number",
        lambda t, m: prepare(t, sentiment(_write(_p(t), with_line(5, b"7")))),
        DataError,
        ["sent.jsonl:5: line is not a JSON object (got a number)"],
        before="TypeError",
    ),
    Case(
        "jsonl-gz-truncated",
        lambda t, m: prepare(t, sentiment(_write(t / "sent.jsonl.gz", gzip.compress(jsonl_bytes(rows()))[:-30]))),
        DataError,
        ["sent.jsonl.gz: not a readable gzip file"],
        before="EOFError",
    ),
    Case(
        "jsonl-invalid-json",
        lambda t, m: prepare(t, sentiment(_write(_p(t), with_line(5, b'{"id": "r4", ')))),
        DataError,
        ["sent.jsonl:5: invalid JSON"],
        before="worked",
    ),
    Case(
        "jsonl-missing-field",
        lambda t, m: prepare(
            t,
            sentiment(
                _write(
                    _p(t),
                    jsonl_bytes(
                        [r if i != 6 else {k: v for k, v in r.items() if k != "text"} for i, r in enumerate(rows())]
                    ),
                )
            ),
        ),
        DataError,
        ["sent.jsonl:7: field 'text' missing"],
        before="worked",
    ),
    Case(
        "jsonl-label-outside-label-set",
        lambda t, m: prepare(
            t,
            sentiment(
                _write(_p(t), jsonl_bytes([r if i != 2 else {**r, "label": "mixed"} for i, r in enumerate(rows())]))
            ),
        ),
        DataError,
        ["sent.jsonl:3: label 'mixed' not in the label set"],
        before="worked",
    ),
    Case(
        "empty-split",
        lambda t, m: prepare(t, sentiment(_write(_p(t), jsonl_bytes(rows())), test=30, dev=10)),
        DataError,
        ["dataset 'sent'", "split 'fewshot' is empty"],
        before="worked",
    ),
    Case(
        "drop-empty-names-unknown-field",
        lambda t, m: prepare(t, _drop_empty(t, ["txt"])),
        DataError,
        ["dataset 'sent'", "source.drop_empty names ['txt']"],
        before="worked",
    ),  # (since drop_empty)
    Case(
        "csv-not-utf8",
        lambda t, m: prepare(
            t,
            sentiment(
                _write(t / "s.csv", write_csv(t / "s.csv", rows()).replace(b"item 2 was bad", b"item 2 was s\xfcss")),
                "csv",
            ),
        ),
        DataError,
        ["s.csv:4: not UTF-8 at byte 99 of the file (0xfc, column 19)"],
    ),
    Case(
        "csv-label-missing",
        lambda t, m: prepare(
            t,
            sentiment(
                _write(
                    t / "s.csv",
                    write_csv(t / "s.csv", [r if i != 4 else {**r, "label": ""} for i, r in enumerate(rows())]),
                ),
                "csv",
            ),
        ),
        DataError,
        ["s.csv:6: label missing"],
        before="worked",
    ),
    Case(
        "parquet-not-parquet",
        lambda t, m: prepare(t, sentiment(_write(t / "s.parquet", b"PAR1 not really"), "parquet")),
        DataError,
        ["s.parquet: not a readable Parquet file"],
        before="polars ComputeError",
    ),
    Case(
        "vader-not-utf8",
        lambda t, m: vader(t, b"1_1\t2.5\tI loved it.\r\n2_1\t-3\tDreadf\x81l.\r\n"),
        DataError,
        ["hutto_ICWSM_2014/tweets_GroundTruth.txt:2: not UTF-8 at byte 34"],
    ),
    Case(
        "bigbench-not-utf8",
        lambda t, m: bigbench(t, json.dumps(bb_task(), indent=1).encode().replace(b"fact 3.", b"fact \xff3.")),
        DataError,
        ["toy/task.json:", ": not UTF-8 at byte "],
    ),
    Case(
        "bigbench-truncated-json",
        lambda t, m: bigbench(t, json.dumps(bb_task(), indent=1).encode()[:200]),
        DataError,
        ["toy/task.json:", "invalid JSON"],
        before="JSONDecodeError",
    ),
    Case(
        "bigbench-no-examples",
        lambda t, m: bigbench(t, b'{"name": "toy"}'),
        DataError,
        ["toy/task.json: expected a JSON object with a 'examples' list"],
        before="KeyError",
    ),
    Case(
        "bigbench-example-not-object",
        lambda t, m: bigbench(t, json.dumps({"examples": bb_task()["examples"] + ["just a string"]}).encode()),
        DataError,
        ["toy/task.json: examples[12]: not a JSON object"],
        before="AttributeError",
    ),
    Case(
        "bigbench-regex-mismatch",
        lambda t, m: bigbench(
            t,
            json.dumps(
                {"examples": bb_task()["examples"] + [{"input": "no claim here", "target_scores": {"True": 1}}]}
            ).encode(),
        ),
        DataError,
        ["toy/task.json: examples[12]: input does not match"],
        before="worked",
    ),
    Case(
        "squad-no-paragraphs",
        lambda t, m: squad(t, {"data": [{"title": "a"}]}),
        DataError,
        ["squad_shifts/toy.json: data[0]: field 'paragraphs' missing"],
        before="KeyError",
    ),
    Case(
        "squad-answer-without-text",
        lambda t, m: squad(
            t,
            {
                "data": [
                    {
                        "paragraphs": [
                            {"context": "c.", "qas": [{"id": "1", "question": "q?", "answers": [{"answer_start": 0}]}]}
                        ]
                    }
                ]
            },
        ),
        DataError,
        ["squad_shifts/toy.json: data[0].paragraphs[0].qas[0]: field 'answers'"],
        before="KeyError",
    ),
    Case(
        "changed-cached-archive",
        lambda t, m: prepare(
            t,
            {
                **sentiment(t / "unused.jsonl"),
                "source": {"adapter": "jsonl", "asset": "pkg", "member": "pkg/data.jsonl", "columns": {"text": "text"}},
                "asset": {
                    "package": "pkg",
                    "version": "1.0",
                    "filename": "pkg-1.0-py3-none-any.whl",
                    "sha256": "a" * 64,
                },
            },
            asset=_wheel(t),
        ),
        AssetError,
        ["asset 'pkg' (pkg-1.0-py3-none-any.whl): sha256 mismatch"],
        before="worked",
    ),
    # --- RAG corpus sources (ftgen.corpus)
    Case(
        "rag-passage-line-not-object",
        lambda t, m: corpus(t, jsonl_bytes(PASSAGES) + b'["p9", "text"]\n', jsonl_bytes(QUESTIONS)),
        DataError,
        ["passages.jsonl:7: line is not a JSON object (got an array)"],
        before="AttributeError",
    ),
    Case(
        "rag-questions-not-utf8",
        lambda t, m: corpus(t, jsonl_bytes(PASSAGES), jsonl_bytes(QUESTIONS).replace(b"passage 1", b"passage \xc3(1")),
        DataError,
        ["questions.jsonl:2: not UTF-8 at byte "],
    ),
    Case(
        "rag-question-missing-field",
        lambda t, m: corpus(
            t,
            jsonl_bytes(PASSAGES),
            jsonl_bytes([q if i != 1 else {**q, "answers": []} for i, q in enumerate(QUESTIONS)]),
        ),
        DataError,
        ["questions.jsonl:2: field 'answers' missing or empty"],
        before="worked",
    ),
    Case(
        "rag-gold-not-in-corpus",
        lambda t, m: corpus(t, jsonl_bytes(PASSAGES[:5]), jsonl_bytes(QUESTIONS)),
        DataError,
        ["corpus 'zoo'", "gold passage id(s) are not in the corpus, e.g. ['p5']"],
        before="worked",
    ),
    # --- model folders (ftgen.modeling)
    Case(
        "local-model-path-missing",
        lambda t, m: _prepare_local(t, "/nonexistent/model"),
        FileNotFoundError,
        ["model 'mine'", "source: local path '/nonexistent/model' does not exist"],
        before="OSError / hub lookup",
    ),
    Case(
        "load-model-path-missing",
        lambda t, m: ((lambda: _modeling().load_model(str(t / "no" / "model"))), []),
        FileNotFoundError,
        ["model folder '{tmp}/no/model' does not exist"],
        before="hub lookup",
    ),
    Case(
        "load-tokenizer-relative-path-missing",
        lambda t, m: ((lambda: _modeling().load_tokenizer("./missing")), []),
        FileNotFoundError,
        ["model folder './missing' does not exist"],
        before="hub lookup",
    ),
    Case(
        "adapter-safetensors-truncated",
        lambda t, m: damaged_model(t, m, "adapter", "adapter_model.safetensors"),
        ArtifactError,
        ["model folder {tmp}/adapter cannot be loaded", "SafetensorError", "snakemake {tmp}/adapter --force"],
        before="SafetensorError",
        models=True,
    ),
    Case(
        "adapter-config-truncated",
        lambda t, m: damaged_model(t, m, "adapter", "adapter_config.json"),
        ArtifactError,
        ["model folder {tmp}/adapter cannot be loaded", "snakemake {tmp}/adapter --force"],
        before="JSONDecodeError",
        models=True,
    ),
    Case(
        "base-safetensors-truncated",
        lambda t, m: damaged_model(t, m, "base", "model.safetensors"),
        ArtifactError,
        ["model folder {tmp}/base cannot be loaded", "snakemake {tmp}/base --force"],
        before="SafetensorError",
        models=True,
    ),
    Case(
        "tokenizer-json-truncated",
        lambda t, m: damaged_model(t, m, "base", "tokenizer.json"),
        ArtifactError,
        ["model folder {tmp}/base cannot be loaded", "snakemake {tmp}/base --force"],
        before="Exception from tokenizers",
        models=True,
    ),
    # --- reports reading eval cells (ftgen.report.transfer / rag / s3ft)
    Case(
        "aggregate-scores-truncated",
        lambda t, m: aggregate_case(t, lambda b, f: truncate(f)),
        ArtifactError,
        [
            "{tmp}/eval/m/" + FT + "/a1/f0.k0/scores.json is damaged (line 1 column",
            "snakemake {tmp}/eval/m/" + FT + "/a1/f0.k0/scores.json --force",
        ],
        before="JSONDecodeError",
    ),
    Case(
        "aggregate-scores-without-cell",
        lambda t, m: aggregate_case(t, lambda b, f: f.write_text('{"scores": {}}')),
        ArtifactError,
        ["{tmp}/eval/m/" + FT + "/a1/f0.k0/scores.json is damaged (key 'cell' missing)"],
        before="KeyError",
    ),
    Case(
        "aggregate-predictions-bad-line",
        lambda t, m: aggregate_case(t, lambda b, f: truncate(b.with_name("predictions.jsonl"), 0.7)),
        ArtifactError,
        [
            "{tmp}/eval/m/base/a1/f0.k0/predictions.jsonl is damaged (line 6 column",
            "snakemake {tmp}/eval/m/base/a1/f0.k0/predictions.jsonl --force",
        ],
        before="JSONDecodeError",
    ),
    Case(
        "aggregate-predictions-rows-lost",
        lambda t, m: aggregate_case(t, lambda b, f: _keep_lines(f.with_name("predictions.jsonl"), 5)),
        ArtifactError,
        ["{tmp}/eval/m/" + FT + "/a1/f0.k0/predictions.jsonl is damaged (5 rows, but", "scored 8 examples"],
        before="ValueError not naming the file",
    ),
    Case(
        "aggregate-predictions-deleted",
        lambda t, m: aggregate_case(t, lambda b, f: f.with_name("predictions.jsonl").unlink()),
        ArtifactError,
        ["{tmp}/eval/m/" + FT + "/a1/f0.k0/predictions.jsonl is missing", "--force"],
        before="FileNotFoundError",
    ),
    Case(
        "rag-judge-json-truncated",
        lambda t, m: rag_case(t, lambda d: truncate(d / "judge.json")),
        ArtifactError,
        ["{tmp}/qa.sft.f0.n10.s0/judge.json is damaged (line"],
        before="JSONDecodeError",
    ),
    Case(
        "rag-judgements-bad-line",
        lambda t, m: rag_case(t, lambda d: truncate(d / "judgements.jsonl", 0.9)),
        ArtifactError,
        ["{tmp}/qa.sft.f0.n10.s0/judgements.jsonl is damaged (line 8 column"],
        before="JSONDecodeError",
    ),
    Case(
        "rag-judgements-stale",
        lambda t, m: rag_case(t, lambda d: _keep_lines(d / "predictions.jsonl", 6)),
        ArtifactError,
        ["{tmp}/qa.sft.f0.n10.s0/judgements.jsonl is damaged (row 7: item 'q6' is not in"],
        before="passed silently",
    ),
    Case(
        "s3ft-card-truncated",
        lambda t, m: s3ft_case(t, lambda card, preds: truncate(card)),
        ArtifactError,
        ["{tmp}/card.json is damaged (line 1 column", "snakemake {tmp}/card.json --force"],
        before="JSONDecodeError",
    ),
    Case(
        "s3ft-predictions-bad-line",
        lambda t, m: s3ft_case(t, lambda card, preds: truncate(preds, 0.3)),
        ArtifactError,
        ["{tmp}/eval/m/a1.s3ft.f0.n10.s0/g1/f0.k0/predictions.jsonl is damaged (line 3 column"],
        before="JSONDecodeError",
    ),
    # --- the command line (ftgen.cli)
    Case(
        "cli-params-not-json",
        lambda t, m: cli(
            "prepare-data",
            "--spec",
            "{'name': 1}",
            "--examples",
            str(t / "e"),
            "--card",
            str(t / "c"),
            "--manifest",
            str(t / "m"),
        ),
        SystemExit,
        ["ftgen prepare-data: error: argument --spec: not valid JSON (line 1 column 2"],
        before="'invalid _params value' + usage",
    ),
    Case(
        "cli-params-not-object",
        lambda t, m: cli(
            "prepare-data",
            "--spec",
            "[1, 2]",
            "--examples",
            str(t / "e"),
            "--card",
            str(t / "c"),
            "--manifest",
            str(t / "m"),
        ),
        SystemExit,
        ["argument --spec: must be a JSON object"],
        before="TypeError later",
    ),
    Case(
        "cli-missing-input",
        lambda t, m: (
            cli(
                "aggregate",
                "--spec",
                "{}",
                "--parquet",
                str(t / "t.parquet"),
                "--csv",
                str(t / "t.csv"),
                "--md",
                str(t / "t.md"),
                "--manifest",
                str(t / "t.json"),
                "--scores",
                str(t / "nope" / "scores.json"),
            )[0],
            [t / "t.parquet", t / "t.csv"],
        ),
        SystemExit,
        ["ftgen aggregate: error: argument --scores: no such file or folder: '{tmp}/nope/scores.json'"],
        before="FileNotFoundError traceback",
    ),
    Case(
        "cli-evaluate-model-missing",
        lambda t, m: cli(
            "evaluate",
            "--model",
            "/nonexistent",
            "--base",
            str(t),
            "--examples",
            str(t),
            "--spec",
            "{}",
            "--cell",
            "m",
            "base",
            "d",
            "0",
            "0",
            "--predictions",
            str(t / "p.jsonl"),
            "--scores",
            str(t / "s.json"),
        ),
        SystemExit,
        ["ftgen evaluate: error: argument --model: no such file or folder: '/nonexistent'"],
        before="no check: evaluate went on to look '/nonexistent' up on the hub",
    ),
]


def _modeling():
    from ftgen import modeling

    return modeling


def _prepare_local(tmp: Path, path: str):
    out = tmp / "results" / "models" / "mine"
    return (
        lambda: _modeling().prepare_model(spec={"source": "local", "path": path}, model=str(out), log=lambda *_: None)
    ), [out]


def _drop_empty(tmp: Path, fields: list[str]) -> dict:
    params = sentiment(_write(_p(tmp), jsonl_bytes(rows())))
    params["source"]["drop_empty"] = fields
    return params


def _keep_lines(path: Path, n: int) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:n]))


def _wheel(tmp: Path) -> Path:
    whl = tmp / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/data.jsonl", jsonl_bytes(rows()))
    return whl


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_data_is_named_and_leaves_nothing(case: Case, tmp_path, request, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths in a case resolve (and are missing) here
    models = request.getfixturevalue("tiny_folders") if case.models else None
    call, outputs = case.make(tmp_path, models)
    with pytest.raises(case.error) as info:
        call()
    message = f"{info.value}\n{capsys.readouterr().err}"
    for fragment in case.expect:
        assert fragment.format(tmp=tmp_path) in message, message
    if case.error is SystemExit:
        assert info.value.code == 2 and "Traceback" not in message
    for out in outputs:
        assert not out.exists(), f"{out} left behind"
        assert not list(out.parent.glob(f".{out.name}.tmp-*")), f"temp file of {out} left behind"


def test_table_is_large_enough():
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)


def test_utf8_bom_and_crlf_still_read(tmp_path):
    """What the byte-level readers must keep doing: a BOM before the CSV header and CRLF endings."""
    data = write_csv(tmp_path / "s.csv", rows()).replace(b"\n", b"\r\n")
    (tmp_path / "s.csv").write_bytes(b"\xef\xbb\xbf" + data)
    call, outputs = prepare(tmp_path, sentiment(tmp_path / "s.csv", "csv"))
    card = call()
    assert card["rows_valid"] == 40 and outputs[0].exists()
    import polars as pl

    ids = set(pl.read_parquet(outputs[0])["id"])
    assert len(ids) == 36 and ids <= {f"r{i}" for i in range(40)}  # the id column (BOM stripped), not line numbers


# ============================================================================ part 3: shell injection
def test_hostile_strings_in_a_study_never_reach_a_shell(tmp_path_factory):
    """A whole (reduced) smoke study whose free-form strings - results and cache folders, the data
    files' paths, a task's prompt - carry `$(...)`, backticks, `;`, quotes and spaces: it runs to
    its tables and no injected command ran."""
    wd = copy_repo(tmp_path_factory, "hostile")
    bad = "x $(touch PWNED1) `touch PWNED2`; touch PWNED3 'it''s' \"q\""
    shutil.copytree(wd / "tests/data", wd / f"data {bad}")
    cfg = yaml.safe_load((wd / SMOKE_CONFIG).read_text())
    cfg.update(results_dir=f"res {bad}", cache_dir=f"cache {bad}")
    cfg["datasets"] = {d: cfg["datasets"][d] for d in ("sent_food", "sent_film", "qg_home")}
    for ds in cfg["datasets"].values():
        ds["source"]["path"] = ds["source"]["path"].replace("tests/data", f"data {bad}")
    cfg["finetune"]["train_on"] = ["sent_food"]
    cfg["tasks"] = {
        "sentiment": {"prompts": {0: "### Input $(touch PWNED4); `touch PWNED5` 'x' \"y\":\n{text}\n### Sentiment:"}}
    }
    (wd / "config/studies/hostile.yaml").write_text(yaml.safe_dump(cfg))
    smk(wd, "--cores", "2", "--configfile", "config/studies/hostile.yaml")
    assert (wd / f"res {bad}" / "smoke" / "tables" / "transfer.csv").exists()
    pwned = [p for root in (wd, Path.cwd()) for p in root.rglob("PWNED*")]
    assert not pwned, pwned


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("study: x\ndatasets:\n  a: [1, 2\n", r"bad\.yaml:4: invalid YAML"),
        ("", r"bad\.yaml: file is empty"),
        ("study: x\nstudy: y\n", r"bad\.yaml:2: duplicate key 'study'"),
    ],
)
def test_check_config_names_file_and_line(tmp_path, text, expected):
    """Snakemake parses --configfile itself and names neither file nor line for a YAML error;
    `ftgen check-config` does (the README points there)."""
    import subprocess
    import sys

    (tmp_path / "bad.yaml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "ftgen", "check-config", str(tmp_path / "bad.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2 and re.search(expected, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
