"""`ftgen preflight`: before a study's GPU jobs are queued, check in minutes what the hub must
provide for it (on a machine with hub access, e.g. the login node).

- every dataset and RAG corpus whose source reads the hub (adapters `hf`, `mbpp`, `qasper`):
  the first rows of each split it reads are streamed with the arguments `prepare-data` uses
  (`ftgen.data.hf_load_args`); the columns the source names must exist, the label values seen
  must be keys of `label_map` (or `drop_labels`), the rows must pass the same normalisation as
  `prepare-data`, and the split must hold the rows the study draws from it (test + dev +
  fewshot + the largest training size; its size from the builder's info, else the rows
  streamed when the split ended within them, else "unknown", not judged);
- every `source: hub` model (and the dense retriever's encoder): its config and tokenizer load,
  or the gated / not-found error is named with what to do (HF_TOKEN, the repo's licence page).

One table, and a non-zero exit status on any failure. Offline (HF_HUB_OFFLINE, or the hub not
reachable) the same dataset checks run against the fixtures (tests/fixtures/build/hub/<repo id>,
`ftgen.study.rehearsal.fixture_source`), models are not checked, and the run fails: a preflight
that could not reach the hub did not pass.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .data import DataError, get_path, hf_load_args, map_columns, normalise
from .step import Inputs, Int, Json, Output, UsageError
from .study import load_studies, rehearsal, with_defaults

ROWS = 100  # rows streamed per split: enough to see the columns and a spread of labels
CONNECT_TIMEOUT = 5.0  # seconds for the one check whether the hub answers
OK, FAIL, NA = "yes", "NO", "-"
# what each reader needs beyond a column mapping (ftgen.data.read_mbpp, ftgen.corpus.read_qasper)
FIXED_COLUMNS = {"mbpp": ("text", "code", "test_list"), "qasper": ("full_text", "qas")}


@dataclass
class Check:
    """One row of the table."""

    name: str
    loads: str = NA
    rows: str = NA
    columns: str = NA
    labels: str = NA
    problem: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.problem)


# ----------------------------------------------------------------------------- the hub
def hub_unreachable(timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why the hub cannot be reached, or None when it answers (checked once, quickly)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as exc:  # any failure to connect: DNS, refused, timeout, proxy
        return f"{constants.ENDPOINT} did not answer ({type(exc).__name__}: {_first_line(exc)})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------- reading a split
class Reader:
    """Streams the first rows of a split and reads its size, once per distinct source."""

    def __init__(self, rows: int = ROWS):
        self.n = rows
        self._rows: dict[str, list[dict]] = {}
        self._sizes: dict[str, int | None] = {}

    def rows(self, src: dict) -> list[dict]:
        key = json.dumps(hf_load_args(src), sort_keys=True)
        if key not in self._rows:
            import datasets

            saved = Path(src["name"]) / "dataset_dict.json", Path(src["name"]) / "state.json"
            if any(p.exists() for p in saved):  # a save_to_disk folder (tests, air-gapped sites)
                ds = datasets.load_from_disk(src["name"])
                ds = ds[src["split"]] if isinstance(ds, datasets.DatasetDict) else ds
            else:
                ds = datasets.load_dataset(**hf_load_args(src), streaming=True)
            self._rows[key] = list(itertools.islice(ds, self.n))
        return self._rows[key]

    def size(self, src: dict) -> int | None:
        """Rows in the split, from the builder's info (the dataset card), else the streamed rows
        when the split ended before `rows` of them; None: not known."""
        args = hf_load_args(src)
        key = json.dumps(args, sort_keys=True)
        if key not in self._sizes:
            import datasets

            split = args.pop("split")
            try:
                splits = datasets.load_dataset_builder(**args).info.splits or {}
                info = splits.get(split)
                self._sizes[key] = int(info.num_examples) if info is not None and info.num_examples else None
            except Exception:  # no builder info (a saved folder, a script dataset): unknown
                self._sizes[key] = None
            streamed = self._rows.get(key)
            if self._sizes[key] is None and streamed is not None and len(streamed) < self.n:
                self._sizes[key] = len(streamed)  # the whole split was streamed
        return self._sizes[key]


# ----------------------------------------------------------------------------- what a source names
def named_columns(src: dict, inputs: list[str] | None = None) -> list[tuple[str, str]]:
    """(column or dotted path, where the source names it) for every column the source reads
    (`ftgen.data.map_columns`: plain names, `{column:, item:}`, `{pick: [...], index:}`)."""
    out: list[tuple[str, str]] = []

    def add(spec, where: str) -> None:
        if isinstance(spec, dict) and "pick" in spec:
            add(spec["index"], where)
            for name in spec["pick"]:
                add(name, where)
        elif isinstance(spec, dict):
            out.append((spec["column"], where))
        elif isinstance(spec, str):
            out.append((spec, where))

    if src["adapter"] in FIXED_COLUMNS:
        return [(c, f"the {src['adapter']} adapter") for c in FIXED_COLUMNS[src["adapter"]]]
    columns = src.get("columns") or {f: f for f in inputs or []}
    for field, spec in columns.items():
        add(spec, f"source.columns.{field}")
    for key in ("label", "references", "id", "group", "label_keys"):
        add(src.get(key), f"source.{key}")
    options = src.get("options")
    for spec in [options] if isinstance(options, str) else options or []:
        add(spec, "source.options")
    return out


def missing_columns(row: dict, named: list[tuple[str, str]]) -> list[str]:
    """The named columns a row lacks ("'x' (source.columns.document)")."""
    return [
        f"{name!r} ({where})"
        for name, where in named
        if name not in row and not ("." in name and get_path(row, name) is not None)
    ]


def unknown_labels(rows: list[dict], src: dict, labels: list[str] | None) -> tuple[list[str], str] | None:
    """Label values seen that the source cannot map: (values, what they should be in), or None
    when the source has no label column to check that way."""
    if not src.get("label"):
        return None
    seen = sorted({str(r[src["label"]]) for r in rows if src["label"] in r})
    drop = {str(v) for v in src.get("drop_labels") or []}
    if src.get("label_map"):
        keys = {str(k) for k in src["label_map"]}
        return [v for v in seen if v not in keys | drop], f"source.label_map keys {sorted(keys)}"
    if labels and not src.get("binarize") and src.get("label_index") is None:
        return [v for v in seen if v not in set(labels) | drop], f"the label set {labels}"
    return None


def rows_needed(spec: dict) -> dict[str, tuple[int, str]]:
    """hub split -> (rows the study draws from it, how that adds up)."""
    split, src = spec["split"], spec["source"]
    parts = {"test": int(split.get("test") or 0), "dev": int(split.get("dev") or 0)}
    parts["fewshot"] = int(split.get("fewshot") or 0)
    parts["train"] = int(spec.get("train_size") or 0)
    if split.get("test_per_group"):  # a sample of every group: any rows will do
        return {src["split"]: (1, "test_per_group: a sample of each group")}

    def total(keys):
        used = {k: parts[k] for k in keys if parts[k]}
        return sum(used.values()), " + ".join(f"{k} {n}" for k, n in used.items())

    if src.get("test_split"):
        return {src["test_split"]: total(["test"]), src["split"]: total(["dev", "fewshot", "train"])}
    return {src["split"]: total(["test", "dev", "fewshot", "train"])}


# ----------------------------------------------------------------------------- checks
def _where(src: dict) -> str:
    return f"{src['name']}[{src.get('config') or 'default'}/{src['split']}]"


def _causes(exc: BaseException) -> list[BaseException]:
    """The error and the errors it was raised from (`raise ... from`, or during handling)."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def load_problem(exc: BaseException, src: dict) -> str:
    """A split that did not load: the error, and for a gated dataset what to do."""
    from huggingface_hub.errors import GatedRepoError

    text = f"{_where(src)}: {type(exc).__name__}: {_first_line(exc)}"
    if any(isinstance(e, GatedRepoError) or "gated" in str(e).lower() for e in _causes(exc)):
        text += f" (accept its terms at https://huggingface.co/datasets/{src['name']} and set HF_TOKEN)"
    return text


def check_dataset(name: str, spec: dict, reader: Reader, offline: bool) -> Check:
    """One dataset of the study (`Study.preflight_params()["datasets"][name]`)."""
    check = Check(name)
    src = with_defaults(spec["source"], definition="source")  # as prepare-data reads it
    try:
        src = rehearsal.fixture_source(src) if offline else src
    except FileNotFoundError as exc:
        check.loads, check.problem = FAIL, str(exc)
        return check
    splits = [src["test_split"], src["split"]] if src.get("test_split") else [src["split"]]
    problems: list[str] = []
    rows_by_split: dict[str, list[dict]] = {}
    for hub_split in splits:
        try:
            rows_by_split[hub_split] = reader.rows({**src, "split": hub_split})
        except Exception as exc:  # the hub's or datasets' own error, named
            check.loads = FAIL
            check.problem = load_problem(exc, {**src, "split": hub_split})
            return check
        if not rows_by_split[hub_split]:
            problems.append(f"{_where({**src, 'split': hub_split})}: no rows")
    check.loads = OK
    # sizes against what the study draws
    sizes = []
    for hub_split, (need, parts) in rows_needed({**spec, "source": src}).items():
        have = reader.size({**src, "split": hub_split})
        label = f"{hub_split} " if len(splits) > 1 else ""
        if offline:  # a fixture's card counts the fixture's rows, not the hub's: shown, not judged
            sizes.append(f"{label}fixture {'unknown' if have is None else have} (needs {need})")
            continue
        sizes.append(f"{label}{'unknown' if have is None else have} (needs {need})")
        if have is not None and have < need:
            problems.append(f"split {hub_split!r} has {have} rows, the study needs {need} ({parts})")
    check.rows = "; ".join(sizes)
    first = next((rows[0] for rows in rows_by_split.values() if rows), None)
    if first is not None:
        missing = missing_columns(first, named_columns(src, spec.get("inputs")))
        check.columns = FAIL if missing else OK
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}; the split has {sorted(first)}")
    all_rows = [r for rows in rows_by_split.values() for r in rows]
    unknown = unknown_labels(all_rows, src, spec.get("labels"))
    if unknown is not None:
        check.labels = FAIL if unknown[0] else OK
        if unknown[0]:
            problems.append(f"label value(s) {unknown[0]} not in {unknown[1]}")
    if src["adapter"] == "hf" and not problems:  # the rows as prepare-data normalises them
        located = [
            (f"{_where({**src, 'split': s})}: row {i}", raw)
            for s, rows in rows_by_split.items()
            for i, raw in enumerate(rows)
        ]
        try:
            normalise(
                ((loc, map_columns(loc, raw, src, spec["inputs"], i)) for i, (loc, raw) in enumerate(located)),
                {**spec, "source": src},
            )
        except DataError as exc:
            problems.append(str(exc))
    check.problem = "; ".join(problems)
    return check


def check_corpus(name: str, spec: dict, reader: Reader, offline: bool) -> list[Check]:
    """One RAG corpus: an `hf` corpus is two hub datasets (passages, questions), `qasper` one."""
    src = with_defaults(spec, definition="corpus")["source"]  # as build-corpus reads it
    if src["adapter"] != "hf":
        parts = {f"corpus {name}": (src, named_columns(src))}
    else:
        parts = {
            f"corpus {name} ({key})": (
                {"adapter": "hf", **src[key]},
                [(c, f"{key}.columns.{f}") for f, c in src[key]["columns"].items()],
            )
            for key in ("corpus", "qa")
        }
    out = []
    for label, (sub, named) in parts.items():
        check = Check(label)
        out.append(check)
        try:
            sub = rehearsal.fixture_source(sub) if offline else sub
            rows = reader.rows(sub)
        except FileNotFoundError as exc:
            check.loads, check.problem = FAIL, str(exc)
            continue
        except Exception as exc:
            check.loads, check.problem = FAIL, load_problem(exc, sub)
            continue
        check.loads = OK
        size = reader.size(sub)
        check.rows = f"{'fixture ' if offline else ''}{'unknown' if size is None else size} (needs 1)"
        if not rows:
            check.problem = f"{_where(sub)}: no rows"
            continue
        missing = missing_columns(rows[0], named)
        check.columns = FAIL if missing else OK
        if missing:
            check.problem = f"missing column(s) {', '.join(missing)}; the split has {sorted(rows[0])}"
    return out


@dataclass
class ModelCheck:
    name: str
    repo: str
    config: str = NA
    tokenizer: str = NA
    problem: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.problem)


def model_problem(exc: BaseException, repo: str) -> str:
    """What to do about a failed load: gated access, a wrong name, or the error itself."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    seen = _causes(exc)
    page = f"https://huggingface.co/{repo}"
    if any(isinstance(e, GatedRepoError) for e in seen):
        return (
            f"gated: accept the licence at {page} with your account and set HF_TOKEN to a token of "
            "it (huggingface-cli login)"
        )
    if any(isinstance(e, RepositoryNotFoundError) for e in seen):
        return f"not found: check the name at {page}; a private or gated repo also needs HF_TOKEN"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def check_model(name: str, spec: dict) -> ModelCheck:
    from transformers import AutoConfig, AutoTokenizer

    check = ModelCheck(name, spec["name"])
    for attr, loader in (("config", AutoConfig), ("tokenizer", AutoTokenizer)):
        try:
            loader.from_pretrained(spec["name"], revision=spec.get("revision"))
        except Exception as exc:
            setattr(check, attr, FAIL)
            check.problem = model_problem(exc, spec["name"])
            return check
        setattr(check, attr, OK)
    return check


# ----------------------------------------------------------------------------- the report
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Report:
    datasets: list[Check]
    models: list[ModelCheck]
    offline: str | None  # why the hub was not reachable (None: it was)

    @property
    def passed(self) -> bool:
        return self.offline is None and not any(c.failed for c in [*self.datasets, *self.models])

    def text(self) -> str:
        failures = sum(c.failed for c in [*self.datasets, *self.models])
        if self.offline:
            first = (
                f"HUB NOT REACHABLE ({self.offline}): the dataset table comes from the fixtures in "
                f"{rehearsal.HUB_FIXTURES}, not from the hub; models are not checked. This preflight did not pass."
            )
            last = f"preflight FAILED: the hub was not reachable ({self.offline}); the table comes from the fixtures"
        else:
            first = "preflight against the hub"
            last = "preflight passed" if self.passed else f"preflight FAILED: {failures} problem(s)"
        datasets = markdown_table(
            ["dataset", "loads", "rows", "columns ok", "labels ok", "problem"],
            [[c.name, c.loads, c.rows, c.columns, c.labels, c.problem] for c in self.datasets],
        )
        models = markdown_table(
            ["model", "hub id", "config", "tokenizer", "problem"],
            [[m.name, m.repo, m.config, m.tokenizer, m.problem] for m in self.models],
        )
        return f"{first}\n\n{datasets}\n\n{models}\n\n{last}\n"


def study_params(configfiles: list[str]) -> list[dict]:
    """`Study.preflight_params()` of each study file (a file with `studies:` stands for its list)."""
    return [study.preflight_params() for study in load_studies(configfiles)]


def run_preflight(studies: list[dict], rows: int = ROWS, offline: str | None = None) -> Report:
    """Check every study's `preflight_params()`; `offline`: why the hub is not reachable (the
    fixtures are read instead, models are not checked)."""
    reader = Reader(rows)
    prefix = len(studies) > 1
    datasets: list[Check] = []
    models: list[ModelCheck] = []
    for params in studies:
        tag = f"{params['study']}/" if prefix else ""
        for name, spec in params["datasets"].items():
            check = check_dataset(name, spec, reader, bool(offline))
            check.name = tag + check.name
            datasets.append(check)
        for name, spec in params["corpora"].items():
            for check in check_corpus(name, spec, reader, bool(offline)):
                check.name = tag + check.name
                datasets.append(check)
        for name, spec in params["models"].items():
            if offline:
                models.append(ModelCheck(tag + name, spec["name"], problem="not checked (hub unreachable)"))
            else:
                check = check_model(name, spec)
                check.name = tag + name
                models.append(check)
    return Report(datasets, models, offline)


def preflight(*, configfile: Inputs = None, spec: Json = None, out: Output = None, rows: Int = ROWS) -> None:
    """`ftgen preflight --configfile FILE... [--out preflight.md]` (or `--spec`: one study's
    `preflight_params()`, as the Snakemake rule passes it). Prints one table; exits 1 on any
    failure, and when the hub could not be reached (the table then comes from the fixtures)."""
    if not configfile and not spec:
        raise UsageError(
            "give --configfile FILE... (merged as snakemake merges them; `studies:` lists studies) or --spec"
        )
    studies = study_params(configfile or []) + ([spec] if spec else [])
    offline = hub_unreachable()
    report = run_preflight(studies, rows=rows, offline=offline)
    text = report.text()
    print(text, end="", flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    if not report.passed:
        raise SystemExit(1)
