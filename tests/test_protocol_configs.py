"""Protocol traceability of the GPU study configs (gupta2025, yang2024, barnett2024).

- every hyper-parameter / data choice carries a source marker or a DEVIATION in a comment;
- every `DEVIATION:` in those configs has its row in docs/deviations.md;
- the values the papers fix (papers.md) are the ones configured;
- the `hf` adapter's `test_split` (GSM8K's official test set) and `correct_key` (TruthfulQA MC1)
  on local datasets laid out as on the hub.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from ftgen.data import DataError, assign_splits, load_examples, prepare_dataset
from ftgen.study import Study, load_yaml
from helpers import REPO

GPU_STUDIES = ("gupta2025", "yang2024", "barnett2024")
MARKERS = ("papers.md", "paper", "code", "card", "DEVIATION")
# top-level sections whose every leaf key must cite a source; under `models` / `datasets` only
# the keys that are protocol choices (a dataset's `source` is its location, commented at the dataset)
CHECKED_SECTIONS = {"finetune", "split", "evaluate", "s3ft", "judge", "rag", "tasks"}
MODEL_KEYS = {"name", "chat_template", "max_length"}
DATASET_KEYS = {"split", "max_new_tokens", "stop", "labels"}

KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")


def _split_comment(text: str) -> tuple[str, str]:
    """(value, comment) of a YAML line's remainder: '#' starts a comment outside quotes."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip(), text[i + 1 :].strip()
    return text.strip(), ""


def leaf_keys(path: Path) -> list[tuple[tuple[str, ...], int, str]]:
    """(key path, line number, comment text covering it) for every leaf key of a block-style YAML file.

    A leaf is a key with a value on its line (a scalar, or a flow mapping / list, possibly
    continued on the next lines) or a key followed by a block list. Its comment is the inline
    comment of its line(s) plus the contiguous comment lines directly above it.
    """
    lines = path.read_text().splitlines()
    out, stack = [], []  # stack: (indent, key)
    i = 0
    while i < len(lines):
        line = lines[i]
        m = KEY_LINE.match(line)
        if not m or line.lstrip().startswith("#"):
            i += 1
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        keypath = tuple(k for _, k in stack) + (m["key"],)
        value, comment = _split_comment(m["rest"])
        comments = [comment]
        j = i
        depth = value.count("{") + value.count("[") - value.count("}") - value.count("]")
        while depth > 0 and j + 1 < len(lines):  # a flow collection continued on the next lines
            j += 1
            more, c = _split_comment(lines[j])
            comments.append(c)
            depth += more.count("{") + more.count("[") - more.count("}") - more.count("]")
        above, k = [], i - 1
        while k >= 0 and lines[k].lstrip().startswith("#"):
            above.append(lines[k].lstrip()[1:].strip())
            k -= 1
        nxt = next((ln for ln in lines[j + 1 :] if ln.strip() and not ln.lstrip().startswith("#")), "")
        is_block_list = not value and nxt.lstrip().startswith("- ")
        if value or is_block_list:
            out.append((keypath, i + 1, " ".join(c for c in above[::-1] + comments if c)))
        else:
            stack.append((indent, m["key"]))
        i = j + 1
    return out


def checked(keypath: tuple[str, ...]) -> bool:
    top = keypath[0]
    if top in CHECKED_SECTIONS:
        return "source" not in keypath
    if top == "models":
        return len(keypath) == 3 and keypath[2] in MODEL_KEYS
    if top == "datasets":
        return len(keypath) == 3 and keypath[2] in DATASET_KEYS
    return False


@pytest.mark.parametrize("study", GPU_STUDIES)
def test_every_protocol_key_cites_a_source_or_a_deviation(study):
    path = REPO / "config" / "studies" / f"{study}.yaml"
    leaves = [(kp, n, c) for kp, n, c in leaf_keys(path) if checked(kp)]
    assert len(leaves) > 15, "the line parser found too few keys"
    missing = [f"{path.name}:{n}: {'.'.join(kp)}" for kp, n, c in leaves if not any(m in c for m in MARKERS)]
    assert not missing, "keys without a source marker (" + ", ".join(MARKERS) + ") in a comment:\n" + "\n".join(missing)


def test_the_comment_check_catches_an_uncommented_hyperparameter(tmp_path):
    text = (REPO / "config/studies/gupta2025.yaml").read_text()
    text = text.replace("    lr_scheduler: cosine", "    max_grad_norm: 0.3\n    lr_scheduler: cosine")
    bad = tmp_path / "gupta2025.yaml"
    bad.write_text(text)
    keys = {kp: c for kp, _, c in leaf_keys(bad) if checked(kp)}
    assert ("finetune", "recipe", "max_grad_norm") in keys
    assert not any(m in keys["finetune", "recipe", "max_grad_norm"] for m in MARKERS)
    # the same key with its source passes
    ok = tmp_path / "ok.yaml"
    ok.write_text(text.replace("max_grad_norm: 0.3", "max_grad_norm: 0.3 # SDFT code: the Trainer's default"))
    assert any(m in dict((kp, c) for kp, _, c in leaf_keys(ok))["finetune", "recipe", "max_grad_norm"] for m in MARKERS)


def _readme_deviation_rows() -> list[str]:
    text = (REPO / "docs" / "deviations.md").read_text()
    start = text.index("## Deviations")
    end = text.find("\n## ", start + 1)
    return [ln for ln in text[start : end if end > 0 else None].splitlines() if ln.startswith("| ")]


@pytest.mark.parametrize("study", GPU_STUDIES)
def test_readme_lists_every_deviation_of_the_gpu_configs(study):
    """One README row per `DEVIATION:` comment of the study's config (rows start `| <study> |`)."""
    n_config = sum("DEVIATION:" in ln for ln in (REPO / "config/studies" / f"{study}.yaml").read_text().splitlines())
    rows = [ln for ln in _readme_deviation_rows() if ln.startswith(f"| {study} |")]
    assert n_config > 0 and len(rows) == n_config, (study, n_config, len(rows))


def _study(name: str) -> Study:
    path = REPO / "config/studies" / f"{name}.yaml"
    return Study(load_yaml(path), source=str(path))


def test_gpu_configs_hold_the_papers_values():
    """The values papers.md gives, as configured (a change here must come with a DEVIATION)."""
    yang = _study("yang2024")
    r = yang.recipe(yang.finetunes[0])
    assert (r["method"], r["learning_rate"], r["epochs"], r["lr_scheduler"], r["warmup_ratio"], r["weight_decay"]) == (
        "full",
        2e-5,
        2,
        "linear",
        0.0,
        0.0,
    )
    assert "zero3_offload" in r["deepspeed"] and r["bf16"]
    gpus = yang.resources_for("finetune")["gpu"]
    assert (
        r["per_device_batch_size"] * r["gradient_accumulation"] * gpus == 2 * 8 * 8
    )  # 2/GPU x 8 accumulation x 8 GPUs
    assert yang.models["llama2_7b"]["max_length"] == 1024
    assert yang.finetune["sizes"] == [2000, 4000, 6000] and yang.evaluate["limit"] == 250
    assert yang.config["split"]["test"] == 500 and yang.config["split"]["fewshot"] == 8
    summaries = [d for d, ds in yang.datasets.items() if ds["task"] == "summarization"]
    assert summaries and all(yang.datasets[d]["split"]["fewshot"] == 4 for d in summaries)
    generation = [d for d, ds in yang.datasets.items() if ds["task"] in ("summarization", "question_generation")]
    assert {yang.prompt_params(d)["max_new_tokens"] for d in generation} == {60}  # the paper's code: max_tokens=60

    gupta = _study("gupta2025")
    r = gupta.recipe(gupta.finetunes[0])
    assert (r["learning_rate"], r["epochs"], r["lr_scheduler"]) == (1e-4, 5, "cosine")  # SDFT code
    assert {k: r["lora"][k] for k in ("r", "alpha", "dropout")} == {"r": 8, "alpha": 16, "dropout": 0.1}
    assert r["lora"]["target_modules"] == ["q_proj", "v_proj"]
    gpus = gupta.resources_for("finetune")["gpu"]
    assert r["per_device_batch_size"] * r["gradient_accumulation"] * gpus == 2 * 4  # SDFT: 2 x 4 on one GPU
    assert all(gupta.recipe(f)["epochs"] == 5 for f in gupta.finetunes)
    gsm = gupta.dataset_params("gsm8k")
    assert gsm["source"]["split"] == "train" and gsm["source"]["test_split"] == "test" and gsm["split"]["test"] == 1319
    assert gupta.dataset_params("truthful_qa_mc")["split"]["test"] == 817


# ----------------------------------------------------------------------------- hf test_split
def _answer(i: int) -> str:
    return (
        f"Natalia sold {i} clips in April and half as many in May.\n"
        f"She sold {i} + {i}/2 = <<{i}+{i}/2={i * 1.5:g}>>{i * 1.5:g}.\n#### {i * 1.5:g}"
    )


def _gsm8k_rows(split: str, n: int) -> list[dict]:
    return [
        {
            "question": f"[{split} {i}] How many clips did Natalia sell altogether in April and May?",
            "answer": _answer(i),
        }
        for i in range(n)
    ]


def gsm8k_on_disk(root: Path, n_train: int = 7473, n_test: int = 1319) -> dict[str, Path]:
    """GSM8K as on the hub (openai/gsm8k): configs `main` and `socratic`, each with train / test
    parquet files and the card's `configs:` metadata, and the same as `save_to_disk` writes it.

    Schema from the dataset card (checked against the card's "Data Fields" and its `dataset_info`:
    `question` string, `answer` string whose last line is "#### <number>"; `main` has 7,473 train
    and 1,319 test rows; no id column)."""
    import datasets

    train, test = _gsm8k_rows("train", n_train), _gsm8k_rows("test", n_test)
    hub = root / "hub_gsm8k"
    for config in ("main", "socratic"):
        (hub / config).mkdir(parents=True)
        datasets.Dataset.from_list(train).to_parquet(str(hub / config / "train-00000-of-00001.parquet"))
        datasets.Dataset.from_list(test).to_parquet(str(hub / config / "test-00000-of-00001.parquet"))
    (hub / "README.md").write_text(
        "---\nconfigs:\n"
        + "".join(
            f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train-*\n"
            f"  - split: test\n    path: {c}/test-*\n"
            for c in ("main", "socratic")
        )
        + "---\n# gsm8k (test copy)\n"
    )
    saved = root / "saved_gsm8k"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(test)}
    ).save_to_disk(str(saved))
    return {"hub": hub, "saved": saved}


def _prepare(params: dict, out: Path):
    card = prepare_dataset(
        spec=params,
        examples=str(out / "examples.parquet"),
        card=str(out / "card.json"),
        manifest=str(out / "manifest.json"),
    )
    return card, pl.read_parquet(out / "examples.parquet")


@pytest.fixture(scope="module")
def gsm8k_dirs(tmp_path_factory):
    return gsm8k_on_disk(tmp_path_factory.mktemp("gsm8k"))


@pytest.mark.parametrize("layout", ["hub", "saved"])
def test_gsm8k_test_set_is_the_official_test_split(gsm8k_dirs, layout, tmp_path):
    """gupta2025's gsm8k entry, pointed at a local copy: all 1,319 test rows, in file order, are the
    test set; dev / fewshot / train come from the train split only."""
    params = _study("gupta2025").dataset_params("gsm8k")
    params["source"] = {**params["source"], "name": str(gsm8k_dirs[layout])}
    card, df = _prepare(params, tmp_path)
    assert card["counts"] == {"test": 1319, "dev": 0, "fewshot": 0, "train": 5000}
    test = load_examples(tmp_path / "examples.parquet", "test")
    assert [ex["inputs"]["question"] for ex in test] == [r["question"] for r in _gsm8k_rows("test", 1319)]
    assert [ex["id"] for ex in test[:2]] == ["test/0", "test/1"]
    assert test[0]["references"][0].endswith("#### 0")
    train = df.filter(pl.col("split") == "train")
    assert train["inputs"].struct.field("question").str.starts_with("[train ").all()
    assert train["id"].str.starts_with("train/").all() and train["id"].n_unique() == 5000
    assert not set(train["group"]) & set(df.filter(pl.col("split") == "test")["group"])


def test_test_split_is_capped_in_file_order_and_checked(gsm8k_dirs, tmp_path):
    src = {
        "adapter": "hf",
        "name": str(gsm8k_dirs["hub"]),
        "config": "main",
        "split": "train",
        "test_split": "test",
        "columns": {"question": "question"},
        "references": "answer",
    }
    params = {
        "name": "gsm8k",
        "task": "math_word_problem",
        "task_type": "generation",
        "inputs": ["question"],
        "labels": None,
        "source": src,
        "split": {"seed": 0, "test": 100, "dev": 10, "fewshot": 4, "train": 50},
    }
    card, _ = _prepare(params, tmp_path / "a")
    assert card["counts"] == {"test": 100, "dev": 10, "fewshot": 4, "train": 50}
    test = load_examples(tmp_path / "a" / "examples.parquet", "test")
    assert [ex["id"] for ex in test] == [f"test/{i}" for i in range(100)]  # the first 100, as lm-eval's limit
    assert all(
        ex["id"].startswith("train/")
        for s in ("dev", "fewshot", "train")
        for ex in load_examples(tmp_path / "a" / "examples.parquet", s)
    )
    with pytest.raises(DataError, match="test_split 'train' is also source.split"):
        _prepare({**params, "source": {**src, "test_split": "train"}}, tmp_path / "b")
    rows = [{"id": "a", "group": "a", "split": "test"}, {"id": "b", "group": "b"}]
    with pytest.raises(DataError, match="test_per_group cannot be combined"):
        assign_splits(rows, {"seed": 0, "test_per_group": 5}, "d")
    with pytest.raises(DataError, match="has split 'holdout'"):
        assign_splits([{"id": "a", "group": "a", "split": "holdout"}], {"seed": 0, "test": 1}, "d")


def test_truthfulqa_mc1_options_flagged_by_correct_key(tmp_path):
    """gupta2025's truthful_qa_mc on a local copy with the hub schema (truthfulqa/truthful_qa,
    config multiple_choice, split validation; card: `mc1_targets` = {choices, labels}, exactly one
    label 1, listed first): the correct option is the one flagged 1, whatever its position."""
    import datasets

    rows = [
        {
            "question": f"What happens if you do thing {i}?",
            "mc1_targets": {
                "choices": [f"Nothing in particular {i}", f"You die {i}", f"You win {i}"],
                "labels": [1, 0, 0],
            },
            "mc2_targets": {"choices": [f"Nothing in particular {i}", f"You die {i}"], "labels": [1, 0]},
        }
        for i in range(6)
    ]
    rows[5]["mc1_targets"] = {"choices": ["Wrong first", "Right second"], "labels": [0, 1]}
    hub = tmp_path / "tqa" / "multiple_choice"
    hub.mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(hub / "validation-00000-of-00001.parquet"))
    (tmp_path / "tqa" / "README.md").write_text(
        "---\nconfigs:\n- config_name: multiple_choice\n  data_files:\n  - split: validation\n"
        "    path: multiple_choice/validation-*\n---\n"
    )
    params = _study("gupta2025").dataset_params("truthful_qa_mc")
    params["source"] = {**params["source"], "name": str(tmp_path / "tqa")}
    card, df = _prepare(params, tmp_path / "out")
    assert card["counts"]["test"] == 6
    by_q = {ex["inputs"]["question"]: ex for ex in load_examples(tmp_path / "out" / "examples.parquet")}
    assert by_q["What happens if you do thing 0?"]["label"] == "Nothing in particular 0"
    assert by_q["What happens if you do thing 5?"]["label"] == "Right second"
    assert all(ex["label"] in ex["references"] for ex in by_q.values())
    with pytest.raises(DataError, match="correct_key needs"):
        bad = {**params, "source": {k: v for k, v in params["source"].items() if k != "label_keys"}}
        _prepare(bad, tmp_path / "bad")
