"""RAG corpora: adapters -> a passage corpus (id, title, text) + QA items (question, answers,
gold passage ids), stored with polars.

Passage ids are stable content hashes, so the same passage gets the same id in every run and a
question's gold passage can be checked against what retrieval returns. The train/test split
happens later, in the `rag` dataset adapter (`ftgen.data.read_rag`), grouped by gold passage,
so no passage's questions are on both sides.
"""

from __future__ import annotations

import ast
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from .artifacts import atomic_file, sha256_file, write_json
from .artifacts import manifest as artifact_manifest
from .assets import member_path, verify_asset
from .data import (
    BIGBENCH_ROOT,
    QA,
    DataError,
    Passage,
    json_records,
    load_hf_split,
    need,
    passage_id,
    read_json_file,
    read_knowledge_conflicts,
)
from .step import Json, OptionalInput, Output
from .study.schema import with_defaults

CORPUS_SCHEMA = {"id": pl.String, "title": pl.String, "text": pl.String}
QA_SCHEMA = {"id": pl.String, "question": pl.String, "answers": pl.List(pl.String), "gold": pl.List(pl.String)}


def read_squad_corpus(src: dict, asset: Path) -> Iterator[tuple[str, Passage | None, QA | None]]:
    """SQuAD-format JSON (SQuADShifts): paragraphs are passages, their questions the QA items."""
    member = f"{BIGBENCH_ROOT}/{src['file']}"
    data = read_json_file(member_path(asset, member), member, "data")
    for a, article in enumerate(data):
        for p, para in enumerate(need(f"{member}: data[{a}]", article, "paragraphs", list)):
            loc = f"{member}: data[{a}].paragraphs[{p}]"
            text = para.get("context") if isinstance(para, dict) else None
            text = text.strip() if isinstance(text, str) else ""
            if not text:
                raise DataError(f"{loc}: field 'context' is missing or empty")
            pid = passage_id(text)
            yield loc, {"id": pid, "title": str(article.get("title") or ""), "text": text}, None
            for q, qa in enumerate(para.get("qas") or []):
                if not isinstance(qa, dict) or not all(isinstance(x, dict) for x in qa.get("answers") or []):
                    raise DataError(f"{loc}.qas[{q}]: not a JSON object with a list of answer objects")
                answers = [x["text"] for x in qa.get("answers") or [] if str(x.get("text") or "").strip()]
                yield (
                    f"{loc}.qas[{q}]",
                    None,
                    {
                        "id": str(qa.get("id", f"{a}.{p}.{q}")),
                        "question": qa.get("question"),
                        "answers": answers,
                        "gold": [pid],
                    },
                )


def parse_id_list(value) -> list[str]:
    """Passage ids from a list column or a string holding a list: rag-mini-bioasq's
    `relevant_passage_ids` is the string "[15829955, 29606283]" (JSON, else a Python literal
    such as "['a', 'b']"); any other scalar (a plain string or number) is one id."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                try:
                    items = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    items = None
            if isinstance(items, (list, tuple)):
                return [str(v) for v in items]
        return [text]
    return [str(value)]


def is_junk_text(text: str) -> bool:
    """A passage whose text is empty or the string "nan" (a missing value written out as text,
    as in some of rag-mini-bioasq's passages): nothing to retrieve."""
    return not text or text.lower() == "nan"


def read_hf_corpus(src: dict, asset: Path | None) -> Iterator[tuple]:
    """Hub datasets (the HPC path): one dataset of passages, one of questions, mapped by columns.

    `corpus: {name, config, split, columns: {id, text, title?}}`,
    `qa: {name, config, split, columns: {id, question, answers, gold}}`; `answers` may be a string
    or a list column, `gold` a list column, one id, or a string holding a list (rag-mini-bioasq's
    `relevant_passage_ids`: `parse_id_list`). Passages whose text is empty or "nan" are dropped
    (counted), and so are the gold ids that pointed at them; a question left without gold is
    skipped (counted). Any other gold id missing from the corpus stays an error (build_corpus).
    """

    def rows(spec):
        ds = load_hf_split(spec)
        where = f"{spec['name']}[{spec.get('config') or 'default'}/{spec['split']}]"
        for i, raw in enumerate(ds):
            yield f"{where}: row {i}", raw

    def col(loc, raw, spec, field):
        name = spec["columns"].get(field)
        if name is None:
            return None
        if name not in raw:
            raise DataError(f"{loc}: column {name!r} missing (declared as columns.{field})")
        return raw[name]

    def as_list(value):
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]

    junk: set[str] = set()
    for loc, raw in rows(src["corpus"]):
        text = str(col(loc, raw, src["corpus"], "text") or "").strip()
        pid = str(col(loc, raw, src["corpus"], "id"))
        if is_junk_text(text):
            junk.add(pid)
            yield loc, None, None, 'passage text empty or "nan"'
            continue
        yield loc, {"id": pid, "title": str(col(loc, raw, src["corpus"], "title") or ""), "text": text}, None
    for loc, raw in rows(src["qa"]):
        gold = parse_id_list(col(loc, raw, src["qa"], "gold"))
        kept = [g for g in gold if g not in junk]
        if gold and not kept:
            yield loc, None, None, 'question: every gold passage was dropped (empty or "nan")'
            continue
        yield (
            loc,
            None,
            {
                "id": str(col(loc, raw, src["qa"], "id")),
                "question": col(loc, raw, src["qa"], "question"),
                "answers": as_list(col(loc, raw, src["qa"], "answers")),
                "gold": kept,
            },
        )


def _records(value) -> list[dict]:
    """HF datasets store a sequence of structs as a dict of lists; accept both shapes."""
    if isinstance(value, dict):
        keys = list(value)
        return [dict(zip(keys, vals)) for vals in zip(*(value[k] for k in keys))] if keys else []
    return list(value or [])


def read_qasper(src: dict, asset: Path | None) -> Iterator[tuple]:
    """Qasper (allenai/qasper; its parquet export at refs/convert/parquet): every paragraph of every
    paper's full text is a passage; a question's answers are its annotators' answers (free-form,
    extractive spans joined, or yes/no; unanswerable ones dropped) and its gold passages the
    paragraphs quoted as evidence (figure/table evidence is not in the text corpus). Questions
    with no answer or no textual evidence are skipped (counted).
    The nested fields (full_text, qas, qas.answers) are sequences of structs: `datasets` returns
    them as a dict of lists when the file carries its features, as a list of dicts when not; both
    are read (`_records`).
    """
    ds = load_hf_split(src)
    for i, paper in enumerate(ds):
        loc = f"{src['name']}[{src['split']}]: row {i} ({paper.get('id')})"
        ids = set()
        for sec in _records(paper.get("full_text")):  # sections: {section_name, paragraphs}
            section = sec.get("section_name")
            for para in sec.get("paragraphs") or []:
                if para and para.strip():
                    pid = passage_id(para)
                    ids.add(pid)
                    yield (
                        loc,
                        {
                            "id": pid,
                            "title": f"{paper.get('title', '')} - {section or ''}".strip(" -"),
                            "text": para.strip(),
                        },
                        None,
                    )
        for q in _records(paper.get("qas")):
            answers, gold = [], set()
            for ann in _records(
                (q.get("answers") or {}).get("answer")
                if isinstance(q.get("answers"), dict)
                else [a.get("answer") for a in q.get("answers") or []]
            ):
                if ann.get("unanswerable"):
                    continue
                text = (ann.get("free_form_answer") or "").strip() or "; ".join(ann.get("extractive_spans") or [])
                if not text and ann.get("yes_no") is not None:
                    text = "Yes" if ann["yes_no"] else "No"
                if text:
                    answers.append(text)
                    gold |= {passage_id(e) for e in ann.get("evidence") or []} & ids
            if not answers or not gold:
                yield (
                    f"{loc}: question {q.get('question_id')}",
                    None,
                    None,
                    "question: no answer or no textual evidence",
                )
                continue
            yield (
                f"{loc}: question {q.get('question_id')}",
                None,
                {
                    "id": str(q.get("question_id")),
                    "question": q.get("question"),
                    "answers": list(dict.fromkeys(answers)),
                    "gold": sorted(gold),
                },
            )


def read_jsonl_corpus(src: dict, asset: Path | None) -> Iterator[tuple[str, Passage | None, QA | None]]:
    """Your own corpus: `passages` (JSONL: id, text, title?) and `questions` (JSONL: id, question,
    answers (list or string), gold (passage id list or string))."""

    def lines(path):  # not UTF-8, not JSON, not an object: a DataError naming the line
        for _, loc, raw in json_records(path):
            yield loc, raw

    def field(loc, raw, name):
        if raw.get(name) in (None, "", []):
            raise DataError(f"{loc}: field {name!r} missing or empty")
        value = raw[name]
        return [str(v) for v in value] if isinstance(value, list) else str(value)

    for loc, raw in lines(src["passages"]):
        passage = {"id": field(loc, raw, "id"), "title": str(raw.get("title") or ""), "text": field(loc, raw, "text")}
        yield loc, passage, None
    for loc, raw in lines(src["questions"]):
        answers, gold = field(loc, raw, "answers"), field(loc, raw, "gold")
        yield (
            loc,
            None,
            {
                "id": field(loc, raw, "id"),
                "question": field(loc, raw, "question"),
                "answers": answers if isinstance(answers, list) else [answers],
                "gold": gold if isinstance(gold, list) else [gold],
            },
        )


CORPUS_READERS = {
    "squad": read_squad_corpus,
    "knowledge_conflicts": read_knowledge_conflicts,
    "hf": read_hf_corpus,
    "jsonl": read_jsonl_corpus,
    "qasper": read_qasper,
}


def build_corpus(
    *, spec: Json, corpus: Output, qa: Output, card: Output, manifest: Output, asset: OptionalInput = None, log=print
) -> dict:
    """Read, validate and (optionally) sample one corpus; write corpus + QA parquet, card, manifest.

    `max_passages` keeps a seeded sample of passages (the retrieval pool) and the questions whose
    gold passages are all in it; `max_questions` then samples questions (retrieval + splits).
    """
    settings = with_defaults(spec, definition="corpus")  # params (and the manifest) carry it as written
    src = settings["source"]
    asset_path = Path(asset) if asset else None
    passages: dict[str, dict] = {}
    qas: list[dict] = []
    dropped: Counter = Counter()  # reason -> rows; a reader yields (loc, None, None[, reason]) for a row it skips
    for loc, passage, item, *reason in CORPUS_READERS[src["adapter"]](src, asset_path):
        if passage is None and item is None:
            dropped[reason[0] if reason else "skipped by the adapter"] += 1
        if passage is not None:
            passages.setdefault(passage["id"], passage)
        if item is not None:
            if not str(item.get("question") or "").strip():
                raise DataError(f"{loc}: field 'question' is missing or empty")
            item["question"] = str(item["question"]).strip()
            item["answers"] = [a.strip() for a in item["answers"] if a and a.strip()]
            if not item["answers"]:
                dropped["question: no answer"] += 1  # unanswerable: nothing to judge against
                continue
            qas.append(item)
    where = f"corpus {spec['name']!r}"
    unknown = {g for item in qas for g in item["gold"]} - set(passages)
    if unknown:
        raise DataError(f"{where}: {len(unknown)} gold passage id(s) are not in the corpus, e.g. {sorted(unknown)[:3]}")
    rng = random.Random(settings["seed"])
    ids = sorted(passages)
    if spec.get("max_passages") and len(ids) > spec["max_passages"]:
        ids = sorted(rng.sample(ids, spec["max_passages"]))
        keep = set(ids)
        qas = [item for item in qas if set(item["gold"]) <= keep]
    qas.sort(key=lambda item: item["id"])
    if spec.get("max_questions") and len(qas) > spec["max_questions"]:
        qas = sorted(rng.sample(qas, spec["max_questions"]), key=lambda item: item["id"])
    if not qas:
        raise DataError(f"{where}: no answerable questions left")
    with atomic_file(corpus, "wb") as fh:
        pl.DataFrame([passages[i] for i in ids], schema=CORPUS_SCHEMA).write_parquet(fh)
    with atomic_file(qa, "wb") as fh:
        pl.DataFrame(qas, schema=QA_SCHEMA).write_parquet(fh)
    inputs = {}
    if asset_path is not None:
        pinned = spec.get("asset")
        inputs[asset_path.name] = verify_asset(src["asset"], pinned, asset_path) if pinned else sha256_file(asset_path)
    summary = {
        "corpus": spec["name"],
        "passages": len(ids),
        "questions": len(qas),
        "skipped_rows": sum(dropped.values()),
        "rows_dropped": dict(sorted(dropped.items())),
        "input_sha256": inputs,
        "corpus_sha256": sha256_file(corpus),
        "qa_sha256": sha256_file(qa),
    }
    write_json(card, summary)
    write_json(manifest, artifact_manifest("corpus", spec, seed=settings["seed"], input_sha256=inputs))
    log(json.dumps(summary))
    return summary
