"""RAG corpora: adapters -> a passage corpus (id, title, text) + QA items (question, answers,
gold passage ids), stored with polars.

Passage ids are stable content hashes, so the same passage gets the same id in every run and a
question's gold passage can be checked against what retrieval returns. The train/test split
happens later, in the `rag` dataset adapter (`ftgen.data.read_rag`), grouped by gold passage,
so no passage's questions are on both sides.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Iterator

import polars as pl

from .artifacts import atomic_file, manifest, sha256_file, write_json
from .assets import member_path, verify_asset
from .data import BIGBENCH_ROOT, DataError, _need, json_records, load_hf_split, read_json_file

CORPUS_SCHEMA = {"id": pl.String, "title": pl.String, "text": pl.String}
QA_SCHEMA = {"id": pl.String, "question": pl.String, "answers": pl.List(pl.String),
             "gold": pl.List(pl.String)}


def passage_id(text: str) -> str:
    return "p" + hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:12]


Passage = dict
QA = dict


def read_squad_corpus(src: dict, asset: Path) -> Iterator[tuple[str, Passage | None, QA | None]]:
    """SQuAD-format JSON (SQuADShifts): paragraphs are passages, their questions the QA items."""
    member = f"{BIGBENCH_ROOT}/{src['file']}"
    data = read_json_file(member_path(asset, member), member, "data")
    for a, article in enumerate(data):
        for p, para in enumerate(_need(f"{member}: data[{a}]", article, "paragraphs", list)):
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
                yield f"{loc}.qas[{q}]", None, {"id": str(qa.get("id", f"{a}.{p}.{q}")),
                                                "question": qa.get("question"), "answers": answers, "gold": [pid]}


def read_knowledge_conflicts(src: dict, asset: Path) -> Iterator[tuple[str, Passage | None, QA | None]]:
    """Real Natural Questions restored from BIG-bench's `contextual_parametric_knowledge_conflicts`.

    Each row's context had the real answer replaced by a substitute entity (its target, score 1);
    the real answer is the option scored 0. `context.replace(substitute, original)` restores the
    original Wikipedia passage. A row that cannot be restored (no single substitute/original pair,
    or the substitute does not occur in the context; 1 of 17,528) is skipped and counted.
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
        yield loc, {"id": pid, "title": "", "text": text}, {"id": f"nq{i}", "question": question,
                                                              "answers": [original[0]], "gold": [pid]}


def read_hf_corpus(src: dict, asset: Path | None) -> Iterator[tuple[str, Passage | None, QA | None]]:
    """Hub datasets (the HPC path): one dataset of passages, one of questions, mapped by columns.

    `corpus: {name, config, split, columns: {id, text, title?}}`,
    `qa: {name, config, split, columns: {id, question, answers, gold}}`; `answers` and `gold`
    may be a string or a list column (e.g. rag-mini-bioasq's `relevant_passage_ids`).
    """
    def rows(spec):
        ds = load_hf_split(spec)
        where = f"{spec['name']}[{spec.get('config') or 'default'}/{spec.get('split', 'train')}]"
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

    for loc, raw in rows(src["corpus"]):
        text = str(col(loc, raw, src["corpus"], "text") or "").strip()
        if not text:
            raise DataError(f"{loc}: passage text is empty")
        pid = str(col(loc, raw, src["corpus"], "id"))
        yield loc, {"id": pid, "title": str(col(loc, raw, src["corpus"], "title") or ""), "text": text}, None
    for loc, raw in rows(src["qa"]):
        yield loc, None, {"id": str(col(loc, raw, src["qa"], "id")), "question": col(loc, raw, src["qa"], "question"),
                          "answers": as_list(col(loc, raw, src["qa"], "answers")),
                          "gold": as_list(col(loc, raw, src["qa"], "gold"))}


def _records(value) -> list[dict]:
    """HF datasets store a sequence of structs as a dict of lists; accept both shapes."""
    if isinstance(value, dict):
        keys = list(value)
        return [dict(zip(keys, vals)) for vals in zip(*(value[k] for k in keys))] if keys else []
    return list(value or [])


def read_qasper(src: dict, asset: Path | None) -> Iterator[tuple[str, Passage | None, QA | None]]:
    """Qasper (allenai/qasper): every paragraph of every paper's full text is a passage; a question's
    answers are its annotators' answers (free-form, extractive spans joined, or yes/no; unanswerable
    ones dropped) and its gold passages the paragraphs quoted as evidence (figure/table evidence is
    not in the text corpus). Questions with no answer or no textual evidence are skipped (counted).
    """
    ds = load_hf_split(src)
    for i, paper in enumerate(ds):
        loc = f"{src['name']}[{src.get('split', 'train')}]: row {i} ({paper.get('id')})"
        ids = set()
        full = paper.get("full_text") or {}
        for section, paragraphs in zip(full.get("section_name") or [], full.get("paragraphs") or []):
            for para in paragraphs or []:
                if para and para.strip():
                    pid = passage_id(para)
                    ids.add(pid)
                    yield loc, {"id": pid, "title": f"{paper.get('title', '')} - {section or ''}".strip(" -"),
                                "text": para.strip()}, None
        for q in _records(paper.get("qas")):
            answers, gold = [], set()
            for ann in _records((q.get("answers") or {}).get("answer") if isinstance(q.get("answers"), dict)
                                else [a.get("answer") for a in q.get("answers") or []]):
                if ann.get("unanswerable"):
                    continue
                text = (ann.get("free_form_answer") or "").strip() or "; ".join(ann.get("extractive_spans") or [])
                if not text and ann.get("yes_no") is not None:
                    text = "Yes" if ann["yes_no"] else "No"
                if text:
                    answers.append(text)
                    gold |= {passage_id(e) for e in ann.get("evidence") or []} & ids
            if not answers or not gold:
                yield f"{loc}: question {q.get('question_id')}", None, None
                continue
            yield f"{loc}: question {q.get('question_id')}", None, {
                "id": str(q.get("question_id")), "question": q.get("question"),
                "answers": list(dict.fromkeys(answers)), "gold": sorted(gold)}


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
        yield loc, {"id": field(loc, raw, "id"), "title": str(raw.get("title") or ""), "text": field(loc, raw, "text")}, None
    for loc, raw in lines(src["questions"]):
        answers, gold = field(loc, raw, "answers"), field(loc, raw, "gold")
        yield loc, None, {"id": field(loc, raw, "id"), "question": field(loc, raw, "question"),
                          "answers": answers if isinstance(answers, list) else [answers],
                          "gold": gold if isinstance(gold, list) else [gold]}


CORPUS_READERS = {"squad": read_squad_corpus, "knowledge_conflicts": read_knowledge_conflicts,
                  "hf": read_hf_corpus, "jsonl": read_jsonl_corpus, "qasper": read_qasper}


def build_corpus(params: dict, asset: str | None, out_corpus: str, out_qa: str, out_card: str,
                 out_manifest: str, log=print) -> dict:
    """Read, validate and (optionally) sample one corpus; write corpus + QA parquet, card, manifest.

    `max_passages` keeps a seeded sample of passages (the retrieval pool) and the questions whose
    gold passages are all in it; `max_questions` then samples questions (retrieval + splits).
    """
    src = params["source"]
    asset_path = Path(asset) if asset else None
    passages: dict[str, dict] = {}
    qas: list[dict] = []
    skipped = 0
    for loc, passage, qa in CORPUS_READERS[src["adapter"]](src, asset_path):
        if passage is None and qa is None:
            skipped += 1
        if passage is not None:
            passages.setdefault(passage["id"], passage)
        if qa is not None:
            if not str(qa.get("question") or "").strip():
                raise DataError(f"{loc}: field 'question' is missing or empty")
            qa["question"] = str(qa["question"]).strip()
            qa["answers"] = [a.strip() for a in qa["answers"] if a and a.strip()]
            if not qa["answers"]:
                skipped += 1  # unanswerable: nothing to judge against
                continue
            qas.append(qa)
    where = f"corpus {params['name']!r}"
    unknown = {g for qa in qas for g in qa["gold"]} - set(passages)
    if unknown:
        raise DataError(f"{where}: {len(unknown)} gold passage id(s) are not in the corpus, e.g. {sorted(unknown)[:3]}")
    rng = random.Random(params.get("seed", 0))
    ids = sorted(passages)
    if params.get("max_passages") and len(ids) > params["max_passages"]:
        ids = sorted(rng.sample(ids, params["max_passages"]))
        keep = set(ids)
        qas = [qa for qa in qas if set(qa["gold"]) <= keep]
    qas.sort(key=lambda qa: qa["id"])
    if params.get("max_questions") and len(qas) > params["max_questions"]:
        qas = sorted(rng.sample(qas, params["max_questions"]), key=lambda qa: qa["id"])
    if not qas:
        raise DataError(f"{where}: no answerable questions left")
    with atomic_file(out_corpus, "wb") as fh:
        pl.DataFrame([passages[i] for i in ids], schema=CORPUS_SCHEMA).write_parquet(fh)
    with atomic_file(out_qa, "wb") as fh:
        pl.DataFrame(qas, schema=QA_SCHEMA).write_parquet(fh)
    inputs = {}
    if asset_path is not None:
        spec = params.get("asset")
        inputs[asset_path.name] = verify_asset(src["asset"], spec, asset_path) if spec else sha256_file(asset_path)
    card = {"corpus": params["name"], "passages": len(ids), "questions": len(qas),
            "skipped_rows": skipped, "input_sha256": inputs,
            "corpus_sha256": sha256_file(out_corpus), "qa_sha256": sha256_file(out_qa)}
    write_json(out_card, card)
    write_json(out_manifest, manifest("corpus", params, seed=params.get("seed", 0), input_sha256=inputs))
    log(json.dumps(card))
    return card
