"""G-Eval judge: score arithmetic, reading the score out of the judge's reply, and a real
OpenAI-compatible HTTP server on 127.0.0.1 that answers with scripted scores, 5xx, timeouts and
garbage, driven through the `ftgen judge` CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from ftgen.artifacts import write_json
from ftgen.judge import (
    Counters,
    JudgeCache,
    _ask_logprobs,
    _ask_sample,
    _seed,
    judge_cell,
    parse_score,
    score_position,
    tidy_steps,
    weighted_score,
)
from ftgen.report.rag import rag_report
from ftgen.study import load_yaml
from helpers import REPO

API_KEY = "sk-test-7f3a9c1e5b2d4f60-never-write-me"


def test_weighted_score_is_the_closed_form():
    probs = {"4": 0.55, " 4": 0.15, "5": 0.2, "3": 0.05, "Score": 0.045, "2": 0.005}
    score, kept = weighted_score({t: math.log(p) for t, p in probs.items()}, min_prob=0.01)
    expected = (4 * 0.70 + 5 * 0.20 + 3 * 0.05) / (0.70 + 0.20 + 0.05)  # "2" is under 1 %: dropped
    assert score == pytest.approx(expected, rel=1e-9)
    assert set(kept) == {"3", "4", "5"} and kept["4"] == pytest.approx(0.70)
    assert weighted_score({"x": math.log(0.9)}, 0.01) == (None, {})
    assert weighted_score({"2": math.log(0.004)}, 0.01)[0] is None  # nothing above min_prob
    # the score position is the first position whose chosen token is a digit
    assert score_position([(" ", {" ": -0.1}), ("3", {"3": -0.2})]) == {"3": -0.2}


@pytest.mark.parametrize(
    "text,score",
    [
        ("4", 4),
        (" 5", 5),
        ("Score: 3/5", 3),
        ("- Accuracy: 2", 2),
        ("10", None),
        ("4.5", None),
        ("good", None),
        ("", None),
        ("0", None),
    ],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


def test_tidy_steps_drops_repeats():
    raw = "1. Read it.\n2. Compare.\n- 1. Read it:\n3. Score it.\n\nHere:\n" + "Compare.\n" * 5
    assert tidy_steps(raw, 3) == "1. Read it.\n2. Compare.\n3. Score it."


# ----------------------------------------------------------------------------- fake endpoint
SCORE_PROBS = {"4": 0.6, "5": 0.3, "3": 0.1}


class Endpoint:
    """Behaviour per prompt, chosen by the candidate answer's marker; counts every request."""

    def __init__(self):
        self.requests = Counter()
        self.auth = set()
        self.lock = threading.Lock()

    def reply(self, prompt: str, logprobs: bool) -> tuple[int, dict | None, float]:
        marker = prompt.split("Candidate Answer:\n\n", 1)[1].split("\n", 1)[0].strip()
        with self.lock:
            self.requests[marker] += 1
            n = self.requests[marker]
        if marker == "ANS-500x2" and n <= 2:
            return 500, {"error": {"message": "boom"}}, 0
        if marker == "ANS-timeout-once" and n == 1:
            return 200, None, 2.0  # longer than the client's timeout
        if marker == "ANS-down":
            return 503, {"error": {"message": "overloaded"}}, 0
        if marker == "ANS-garbage" or (marker == "ANS-garbage-once" and n == 1):
            return 200, completion("I cannot say.", {"I": 0.9, "The": 0.1}, logprobs), 0
        return 200, completion("4", SCORE_PROBS, logprobs), 0


def completion(text: str, top: dict[str, float], logprobs: bool) -> dict:
    first = text.split()[0] if text.split() else text
    lp = {
        "content": [
            {
                "token": first,
                "logprob": math.log(max(top.values())),
                "bytes": None,
                "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top.items()],
            }
        ]
    }
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "judge-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text},
                "logprobs": lp if logprobs else None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture
def endpoint():
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.auth.add(self.headers.get("Authorization"))
            status, payload, delay = state.reply(body["messages"][-1]["content"], bool(body.get("logprobs")))
            time.sleep(delay)
            try:
                data = json.dumps(payload or completion("4", SCORE_PROBS, True)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


MARKERS = ["ANS-ok", "ANS-500x2", "ANS-timeout-once", "ANS-garbage", "ANS-garbage-once", "ANS-down"]


def judge_inputs(tmp_path: Path, url: str) -> tuple[dict, Path, Path, Path]:
    params = load_yaml(REPO / "config/registry/judge.yaml")
    params.update(
        backend="openai",
        model="judge-model",
        base_url=url,
        api_key_env="FTGEN_TEST_JUDGE_KEY",
        criteria={"accuracy": params["criteria"]["accuracy"]},
        steps={"accuracy": "1. Compare the candidate with the reference.\n2. Score it."},
        samples=2,
        parse_retries=2,
        max_retries=3,
        backoff_s=0.01,
        timeout_s=0.5,
        cache_dir=str(tmp_path / "cache"),
    )
    cell = tmp_path / "results" / "eval" / "judge-model" / "base" / "qa" / "f0.k0"
    cell.mkdir(parents=True)
    rows = [
        {
            "id": f"q{i}",
            "group": f"g{i}",
            "split": "test",
            "label": None,
            "references": [f"gold {i}"],
            "inputs": {"context": "ctx", "question": f"question {i}?"},
        }
        for i in range(len(MARKERS))
    ]
    examples = tmp_path / "results" / "examples.parquet"
    pl.DataFrame(rows).write_parquet(examples)
    with open(cell / "predictions.jsonl", "w") as fh:
        for i, marker in enumerate(MARKERS):
            fh.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "prediction": marker,
                        "references": [f"gold {i}"],
                        "scores": {"exact_match": 0.0, "token_f1": 10.0 * i},
                    }
                )
                + "\n"
            )
    return params, cell, examples, tmp_path / "results" / "judge" / "steps.json"


def run_cli(step: list[str], log: Path) -> None:
    env = {**os.environ, "FTGEN_TEST_JUDGE_KEY": API_KEY, "PYTHONPATH": str(REPO / "src")}
    with open(log, "a") as fh:
        proc = subprocess.run([sys.executable, "-m", "ftgen", *step], env=env, stdout=fh, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, log.read_text()[-3000:]


def test_openai_judge_retries_caches_and_counts_missing(tmp_path, endpoint):
    params, cell, examples, steps = judge_inputs(tmp_path, endpoint.url)
    log = tmp_path / "results" / "judge.log"
    spec = json.dumps(params)
    run_cli(["judge-steps", "--spec", spec, "--cache", params["cache_dir"], "--steps", str(steps)], log)
    judge = [
        "judge",
        "--spec",
        spec,
        "--predictions",
        str(cell / "predictions.jsonl"),
        "--examples",
        str(examples),
        "--steps",
        str(steps),
        "--cache",
        params["cache_dir"],
        "--cell",
        "judge-model",
        "base",
        "qa",
        "--judgements",
        str(cell / "judgements.jsonl"),
        "--summary",
        str(cell / "judge.json"),
    ]
    run_cli(judge, log)
    assert endpoint.auth == {f"Bearer {API_KEY}"}  # the key reached the server, from the environment
    first = json.loads((cell / "judge.json").read_text())
    acc, counts = first["criteria"]["accuracy"], first["counts"]
    print("first run counts:", counts, "| accuracy:", {k: acc[k] for k in ("score", "missing", "samples_missing")})
    # garbage (3 asks, then cached as missing) and a server that stays down (4 tries, never cached)
    assert acc["missing"] == 2 and acc["logprob_missing"] == 2
    assert acc["samples_missing"] == 4 and acc["items_without_samples"] == 2
    assert counts["transport_retries"] == 2 + 1 + 3 * 3  # 500 x2, one timeout, 3 retries x 3 calls to the dead item
    assert counts["parse_retries"] == 2 + 2 * 2 + 1  # always-garbage: logprobs + 2 samples; garbage-once: 1
    assert counts["unavailable"] == 3
    assert endpoint.requests["ANS-ok"] == 3  # logprobs + 2 samples, no retries
    closed_form = sum(int(t) * p for t, p in SCORE_PROBS.items()) / sum(SCORE_PROBS.values())
    rows = {r["id"]: r for r in map(json.loads, (cell / "judgements.jsonl").read_text().splitlines())}
    assert rows["q0"]["logprob_score"] == pytest.approx(closed_form)
    assert rows["q0"]["samples"] == [4, 4] and rows["q0"]["sample_sd"] == 0.0
    assert rows["q3"]["score"] is None and rows["q3"]["sample_status"] == ["unparseable", "unparseable"]
    assert rows["q5"]["score"] is None and rows["q5"]["logprob_status"] == "unavailable"
    assert acc["score"] == pytest.approx(closed_form)  # the mean over the 4 judged items, missing left out

    # a rerun asks only what was not cached: the dead endpoint's 3 calls (4 tries each)
    before = sum(endpoint.requests.values())
    run_cli(judge, log)
    second = json.loads((cell / "judge.json").read_text())
    assert sum(endpoint.requests.values()) - before == 3 * 4
    assert second["counts"]["cache_hits"] == 5 * 3 and second["counts"]["parse_retries"] == 0
    assert second["criteria"]["accuracy"]["missing"] == 2

    # the tables count the missing items; nothing is imputed
    report = {
        "study": "t",
        "criteria": ["accuracy"],
        "score": "logprobs",
        "samples": 2,
        "bootstrap": 200,
        "bootstrap_seed": 0,
        "datasets": {"qa": "qa"},
    }
    recall = tmp_path / "results" / "recall.json"
    recall.write_text(
        json.dumps({"corpus": "qa", "retriever": "bm25", "passages": 12, "questions": 6, "recall@1": 50.0})
    )
    tables = tmp_path / "results" / "tables"
    table = rag_report(
        judged=[str(cell / "judge.json")],
        recall=[str(recall)],
        spec=report,
        parquet=str(tables / "rag.parquet"),
        csv=str(tables / "rag.csv"),
        md=str(tables / "rag.md"),
        manifest=str(tables / "rag.manifest.json"),
    )
    acc_row = table.filter(pl.col("metric") == "accuracy").row(0, named=True)
    assert (acc_row["n"], acc_row["missing"]) == (6, 2) and acc_row["score"] == pytest.approx(closed_form)
    samples_row = table.filter(pl.col("metric") == "accuracy_samples").row(0, named=True)
    assert (samples_row["missing"], samples_row["score"]) == (2, 4.0)

    # the API key is in no file the judge wrote: outputs, logs, manifests, cache, tables
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10
    leaks = [str(p) for p in written if API_KEY.encode() in p.read_bytes()]
    assert not leaks, f"API key written to {leaks}"
    assert "FTGEN_TEST_JUDGE_KEY" in json.dumps(first["manifest"])  # only the variable's name


def test_openai_judge_without_key_or_url_fails_clearly(tmp_path, monkeypatch):
    from ftgen.judge import Counters, JudgeUnavailable, OpenAIJudge

    monkeypatch.delenv("FTGEN_NO_SUCH_KEY", raising=False)
    params = {**load_yaml(REPO / "config/registry/judge.yaml"), "model": "gpt-4", "api_key_env": "FTGEN_NO_SUCH_KEY"}
    with pytest.raises(JudgeUnavailable, match="FTGEN_NO_SUCH_KEY"):
        OpenAIJudge(params, Counters())


# ----------------------------------------------------------------------------- reading the score
# Reading the judge's score out of its reply.
#
# The form ends with "- {name} (1-5):", so judges echo the label and the scale: the score is the
# number after the label, never the "1" of "(1-5)". Sampled replies (`parse_score`) and the logprob
# score position (`score_position`) follow the same rule, and the cache keeps raw replies / tokens,
# so the score is parsed again on every read.
@pytest.mark.parametrize(
    "text,label,score",
    [
        ("- Accuracy (1-5): 4", "Accuracy", 4),  # the echoed form: not the "1" of "(1-5)"
        ("- Accuracy (1-5): 4", None, 4),
        ("Accuracy (1-5): 4 - the answer matches the reference, 1 detail is missing", "Accuracy", 4),
        ("**Accuracy:** 4", "Accuracy", 4),
        ("**Accuracy**: 5", "Accuracy", 5),
        ("Completeness: 3\nExplanation: the answer covers 1 of 5 points", "Completeness", 3),
        ("４", None, 4),  # fullwidth
        ("٤", None, 4),  # Arabic-Indic
        ("Score：２", None, 2),  # fullwidth colon and digit
        ("I'd give it a 3.", None, 3),
        ("3.0", None, 3),
        ("Accuracy (1-5):", "Accuracy", None),  # the echoed label without a score
        ("1-5: 4", None, 4),
        ("On a scale of 1 to 5, I would rate it 4.", None, 4),
        ("Between 1 and 5: 2", None, 2),
        ("3 or 4", None, None),  # two candidates, no label: ambiguous
        ("Score: 3-4", None, None),  # a range at the label
        ("Score: 3 to 4", None, None),
        ("The answer names 2 of the facts, I'd say 4", None, None),
        ("Accuracy: it names 2 facts correctly. Score: 4", "Accuracy", 4),  # the number right after a label
        ("Score: 3\nAccuracy: 4", "Accuracy", 4),  # the criterion's own label wins
        ("Completeness: 2\nAccuracy: 5", "Accuracy", 5),
        ("Score: 4/10", None, None),  # another scale
        ("4 out of 10", None, None),
        ("Score: -1", None, None),
        ("Accuracy (1-5) - is the candidate answer factually correct? 1 means wrong", "Accuracy", None),
        ("Exact match: 4", "Exact_match", 4),
    ],
)
def test_parse_score_regressions(text, label, score):
    """Replies the old parser (first stand-alone digit 1-5) read wrong."""
    assert (parse_score(text) if label is None else parse_score(text, label)) == score


@pytest.mark.parametrize(
    "text,label,score",
    [
        ("4", None, 4),
        (" 4\n", None, 4),
        ("4/5", None, 4),
        ("Score: 4", None, 4),
        ("**4**", None, 4),
        ("## Score\n4", None, 4),
        ("The answer is accurate. Score: 5", None, 5),
        ("4 out of 5", None, 4),
        ("Rating: 4/5", None, 4),
        ("0", None, None),
        ("6", None, None),
        ("10", None, None),
        ("Score: 7", None, None),  # out of range at the label: missing, no other number is tried
        ("", None, None),
        ("no score given", None, None),
        ("3.5", None, None),  # not an integer score: missing, never rounded
        ("Score: 2 (on a 1-5 scale)", None, 2),
        ("- Accuracy: 2", None, 2),
        ("a rating of 5", None, 5),
        ("Score: 4 - 1 detail is missing", None, 4),  # a dash, not a range
    ],
)
def test_parse_score_keeps(text, label, score):
    """Replies the old parser already read right, and still must."""
    assert (parse_score(text) if label is None else parse_score(text, label)) == score


def positions(tokens):
    """Per token: (token, its own top-logprobs dict), told apart by identity."""
    return [(tok, {tok: math.log(0.9), "@": float(i)}) for i, tok in enumerate(tokens)]


def chosen_index(tokens, label=None):
    pos = positions(tokens)
    top = score_position(pos) if label is None else score_position(pos, label)
    return next(i for i, (_, t) in enumerate(pos) if t is top)


@pytest.mark.parametrize(
    "tokens,label,index",
    [
        (["-", " Accuracy", " (", "1", "-", "5", "):", " 4"], "Accuracy", 7),  # the echoed form
        (["-", " Accuracy", " (", "1", "-", "5", "):", " 4"], None, 7),
        (["Accuracy", " (", "1", "-", "5", "):", "4"], "Accuracy", 6),  # tokens decoded without spaces
        (["Accuracy", "(", "1", " to", " ", "5", "):", " ", "3"], "Accuracy", 8),
        (["1", "-", "5", ":", " 4"], None, 4),
        (["Completeness", ":", " 3", "\n", "Accuracy", ":", " 4"], "Accuracy", 6),
        (["Score", ":", " ", "1", "0"], None, 0),  # "10" is no score digit: the first position
        (["-", " Accuracy", " (", "1", "-", "5", "):"], "Accuracy", 0),  # no score written: the first position
    ],
)
def test_score_position_skips_the_echoed_scale(tokens, label, index):
    assert chosen_index(tokens, label) == index


@pytest.mark.parametrize(
    "tokens,index",
    [
        (["Score", ":", " 2", " (", "on", " a", " ", "1", "-", "5", " scale", ")"], 2),
        ([" ", "3"], 1),  # a judge may open with a space
        (["4", "/", "5"], 0),
        (["I", " cannot", " say"], 0),  # no score digit: the first position
    ],
)
def test_score_position_keeps(tokens, index):
    assert chosen_index(tokens) == index


def test_score_position_reads_cached_json_positions():
    # a cached record comes back from JSON with [token, top] lists, not tuples
    pos = json.loads(
        json.dumps(
            [
                ["-", {"-": -0.1}],
                [" Accuracy", {}],
                [" (", {}],
                ["1", {"1": -0.1}],
                ["-", {}],
                ["5", {"5": -0.1}],
                ["):", {}],
                [" 4", {"4": -0.2, "3": -1.9}],
            ]
        )
    )
    assert score_position(pos) == {"4": -0.2, "3": -1.9}
    assert score_position([]) is None


# ----------------------------------------------------------------------------- cache: parse again on read
ECHO = ["-", " Accuracy", " (", "1", "-", "5", "):", " 4"]
ECHO_TOP = {"4": math.log(0.7), "5": math.log(0.2), "3": math.log(0.1)}


class FakeJudge:
    """Scripted replies; counts every request; `id` and `deterministic_logprobs` as the real ones."""

    id = "fake:judge"
    deterministic_logprobs = False

    def __init__(self, replies=("- Accuracy (1-5): 4",)):
        self.replies = list(replies)
        self.generated, self.asked = [], 0

    def generate(self, prompt, temperature, seed, max_tokens):
        self.generated.append(seed)
        return self.replies[min(len(self.generated) - 1, len(self.replies) - 1)]

    def top_logprobs(self, prompts):
        self.asked += len(prompts)
        return [
            [
                (tok, ECHO_TOP if tok == " 4" else {tok.strip() or tok: math.log(0.95), "1": math.log(0.05)})
                for tok in ECHO
            ]
            for _ in prompts
        ]


PARAMS = {"temperature": 1.0, "max_tokens": 8, "parse_retries": 2, "min_prob": 0.01}


def test_cached_sample_is_parsed_again_without_new_requests(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache.key(FakeJudge.id, "prompt", "sample", 0)
    # written by the old parser: the echoed "(1-5)" read as 1
    cache.put(key, {"score": 1, "status": "ok", "attempts": [{"reply": "- Accuracy (1-5): 4", "score": 1}]})
    backend, counters = FakeJudge(), Counters()
    record = _ask_sample(backend, PARAMS, cache, "prompt", 0, counters)
    assert record["score"] == 4 and record["status"] == "ok"
    assert record["attempts"] == [{"reply": "- Accuracy (1-5): 4", "score": 4}]
    assert backend.generated == [] and counters.requests == 0 and cache.hits == 1


def test_cached_sample_without_a_score_asks_only_the_attempts_left(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache.key(FakeJudge.id, "prompt", "sample", 0)
    # the old parser read "(1-5)" as a score, so the run stopped after one attempt
    cache.put(key, {"score": 1, "status": "ok", "attempts": [{"reply": "Accuracy (1-5):", "score": 1}]})
    backend = FakeJudge(["Score: 5"])
    record = _ask_sample(backend, PARAMS, cache, "prompt", 0, Counters())
    assert record["score"] == 5 and [a["score"] for a in record["attempts"]] == [None, 5]
    assert backend.generated == [_seed(key, 1)]  # the second attempt's seed, as in a fresh run
    assert json.loads(cache._path(key).read_text())["attempts"][-1]["reply"] == "Score: 5"
    again = FakeJudge()
    assert _ask_sample(again, PARAMS, cache, "prompt", 0, Counters())["score"] == 5
    assert again.generated == []


def test_logprobs_cache_keeps_positions_and_old_records_are_asked_again(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache.key(FakeJudge.id, "prompt", "logprobs", 0)
    # an old record: the top logprobs of the "1" in "(1-5)", no positions to choose again from
    cache.put(key, {"top": {"1": math.log(0.95)}, "reply": "".join(ECHO), "status": "asked"})
    backend, counters = FakeJudge(), Counters()
    (record,) = _ask_logprobs(backend, PARAMS, cache, ["prompt"], counters)
    expected = (4 * 0.7 + 5 * 0.2 + 3 * 0.1) / 1.0
    assert record["score"] == pytest.approx(expected) and record["status"] == "ok"
    assert backend.asked == 1 and cache.hits == 0  # the old record counted as a miss
    stored = json.loads(cache._path(key).read_text())
    assert [tok for tok, _ in stored["attempts"][0]["positions"]] == ECHO
    # a rerun re-chooses the position from the stored tokens: no request
    (again,) = _ask_logprobs(backend, PARAMS, cache, ["prompt"], counters)
    assert again["score"] == pytest.approx(expected) and backend.asked == 1 and cache.hits == 1


def test_logprobs_cached_positions_are_scored_again(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache.key(FakeJudge.id, "prompt", "logprobs", 0)
    pos = [[tok, ECHO_TOP if tok == " 4" else {tok: math.log(0.9), "1": math.log(0.1)}] for tok in ECHO]
    cache.put(key, {"attempts": [{"reply": "".join(ECHO), "positions": pos}], "status": "ok"})
    backend = FakeJudge()
    (record,) = _ask_logprobs(backend, PARAMS, cache, ["prompt"], Counters())
    assert record["top"] == ECHO_TOP and backend.asked == 0


def test_judge_cell_reads_the_score_after_the_echoed_label(tmp_path):
    params = load_yaml(REPO / "config/registry/judge.yaml")
    params.update(criteria={"accuracy": params["criteria"]["accuracy"]}, samples=2, score="logprobs")
    steps = tmp_path / "steps.json"
    write_json(
        steps,
        {
            "judge": FakeJudge.id,
            "criteria": {
                "accuracy": {"definition": params["criteria"]["accuracy"], "steps": "1. Compare.", "source": "pinned"}
            },
        },
    )
    items = [{"id": "q0", "question": "q?", "prediction": "a", "references": ["a"], "scores": {}}]
    # without the label "4" and "1" would be two candidates: judge_cell must pass "Accuracy"
    backend = FakeJudge(["- Accuracy (1-5): 4 - 1 detail is missing"])
    summary = judge_cell(
        params,
        items,
        str(steps),
        backend,
        JudgeCache(tmp_path / "cache"),
        Counters(),
        str(tmp_path / "j.jsonl"),
        str(tmp_path / "j.json"),
        log=lambda *_: None,
    )
    row = json.loads((tmp_path / "j.jsonl").read_text().splitlines()[0])
    assert row["samples"] == [4, 4]
    assert row["logprob_score"] == pytest.approx(4 * 0.7 + 5 * 0.2 + 3 * 0.1)
    assert summary["criteria"]["accuracy"]["sample_score"] == 4.0
