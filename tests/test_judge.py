"""G-Eval judge: score arithmetic, and a real OpenAI-compatible HTTP server on 127.0.0.1 that
answers with scripted scores, 5xx, timeouts and garbage, driven through the `ftgen judge` CLI."""

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
from conftest import REPO

from ftgen.study import load_yaml
from ftgen.judge import parse_score, score_position, tidy_steps, weighted_score
from ftgen.report.rag import rag_report

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


@pytest.mark.parametrize("text,score", [("4", 4), (" 5", 5), ("Score: 3/5", 3), ("- Accuracy: 2", 2),
                                        ("10", None), ("4.5", None), ("good", None), ("", None), ("0", None)])
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
    lp = {"content": [{"token": first, "logprob": math.log(max(top.values())), "bytes": None,
                       "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top.items()]}]}
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "judge-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                         "logprobs": lp if logprobs else None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


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
    params.update(backend="openai", model="judge-model", base_url=url, api_key_env="FTGEN_TEST_JUDGE_KEY",
                  criteria={"accuracy": params["criteria"]["accuracy"]},
                  steps={"accuracy": "1. Compare the candidate with the reference.\n2. Score it."},
                  samples=2, parse_retries=2, max_retries=3, backoff_s=0.01, timeout_s=0.5,
                  cache_dir=str(tmp_path / "cache"))
    cell = tmp_path / "results" / "eval" / "judge-model" / "base" / "qa" / "f0.k0"
    cell.mkdir(parents=True)
    rows = [{"id": f"q{i}", "group": f"g{i}", "split": "test", "label": None, "references": [f"gold {i}"],
             "inputs": {"context": "ctx", "question": f"question {i}?"}} for i in range(len(MARKERS))]
    examples = tmp_path / "results" / "examples.parquet"
    pl.DataFrame(rows).write_parquet(examples)
    with open(cell / "predictions.jsonl", "w") as fh:
        for i, marker in enumerate(MARKERS):
            fh.write(json.dumps({"id": f"q{i}", "prediction": marker, "references": [f"gold {i}"],
                                 "scores": {"exact_match": 0.0, "token_f1": 10.0 * i}}) + "\n")
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
    judge = ["judge", "--spec", spec, "--predictions", str(cell / "predictions.jsonl"), "--examples",
             str(examples), "--steps", str(steps), "--cache", params["cache_dir"], "--cell", "judge-model", "base",
             "qa", "--judgements", str(cell / "judgements.jsonl"), "--summary", str(cell / "judge.json")]
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
    report = {"study": "t", "criteria": ["accuracy"], "score": "logprobs", "samples": 2, "bootstrap": 200,
              "bootstrap_seed": 0, "datasets": {"qa": "qa"}}
    recall = tmp_path / "results" / "recall.json"
    recall.write_text(json.dumps({"corpus": "qa", "retriever": "bm25", "passages": 12, "questions": 6, "recall@1": 50.0}))
    tables = tmp_path / "results" / "tables"
    table = rag_report(judged=[str(cell / "judge.json")], recall=[str(recall)], spec=report,
                       parquet=str(tables / "rag.parquet"), csv=str(tables / "rag.csv"), md=str(tables / "rag.md"),
                       manifest=str(tables / "rag.manifest.json"))
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
