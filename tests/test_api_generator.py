"""An API model (OpenAI-compatible) as an un-fine-tuned RAG generator, against a real HTTP server
on 127.0.0.1: answers cached like judgements, 5xx retried, the key never written, and a study
that lists it scores it only as itself."""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import REPO, write_jsonl

from ftgen.study import ConfigError, Study, load_yaml
from ftgen.data import prepare_dataset
from ftgen.evaluate import evaluate_cell
from ftgen.modeling import prepare_model

KEY = "sk-api-generator-test-never-write-me"
PP = {"task": "rag_qa", "type": "generation", "inputs": ["context", "question"], "labels": None,
      "prompts": {"0": "### Context:\n{context}\n### Question:\n{question}\n### Answer:"}, "chat_template": True,
      "max_length": 512, "max_new_tokens": 24}


@pytest.fixture
def server():
    seen, auth, lock = Counter(), set(), threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][-1]["content"]
            city = prompt.rsplit("capital of ", 1)[1].split("?")[0]
            with lock:
                seen[prompt] += 1
                auth.add(self.headers.get("Authorization"))
                first = seen[prompt] == 1
            if city == "Flakia" and first:
                status, payload = 500, {"error": {"message": "boom"}}
            else:  # honours the stop sequence the client sends, as the API does
                text = f"{city}ville\n\nAnd some chatter."
                stop = (body.get("stop") or [None])[0]
                text = text.split(stop)[0] if stop else text
                status, payload = 200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                        "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": text}}]}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen, auth
    httpd.shutdown()
    httpd.server_close()


def test_api_model_answers_are_cached_retried_and_scored(server, tmp_path, monkeypatch):
    url, seen, auth = server
    monkeypatch.setenv("GEN_KEY", KEY)
    cities = ["Norland", "Flakia", "Osterby", "Quen"]
    rows = [{"id": f"q{i}", "context": f"The capital of {c} is {c}ville.", "question": f"What is the capital of {c}?",
             "answer": f"{c}ville"} for i, c in enumerate(cities)]
    src = write_jsonl(tmp_path / "qa.jsonl", rows)
    examples = tmp_path / "examples.parquet"
    prepare_dataset(spec={"name": "qa", "task": "rag_qa", "task_type": "generation", "inputs": ["context", "question"],
                     "labels": None, "source": {"adapter": "jsonl", "path": str(src), "references": "answer",
                                                "columns": {"context": "context", "question": "question"}},
                     "split": {"seed": 0, "test": 4, "dev": 0, "fewshot": 0, "train": 0}, "asset": None},
                    examples=str(examples), card=str(tmp_path / "card.json"), manifest=str(tmp_path / "m.json"))
    spec = {"source": "api", "name": "gpt-4", "base_url": url, "api_key_env": "GEN_KEY"}
    model = tmp_path / "models" / "gpt4"
    prepare_model(spec=spec, model=str(model), log=lambda *_: None)
    api = {**{k: v for k, v in spec.items() if k != "source"}, "timeout_s": 5, "max_retries": 2, "backoff_s": 0.0,
           "cache_dir": str(tmp_path / "cache")}
    params = {"prompt": PP, "format": 0, "shots": 0, "metrics": ["exact_match", "token_f1"], "batch_size": 4,
              "limit": None, "seed": 0, "bf16": False, "api": api}
    out = tmp_path / "eval"
    res = evaluate_cell(model=str(model), base=str(model), examples=str(examples), spec=params,
                        predictions=str(out / "p.jsonl"), scores=str(out / "s.json"),
                        cell=["gpt4", "base", "qa", "0", "0"])
    preds = [json.loads(line) for line in open(out / "p.jsonl")]
    assert {p["prediction"] for p in preds} == {f"{c}ville" for c in cities}  # cut at the blank line
    assert res["scores"] == {"exact_match": 100.0, "token_f1": 100.0}
    assert all(p["prompt"].endswith("### Answer:") for p in preds)
    assert sum(seen.values()) == 5 and auth == {f"Bearer {KEY}"}  # one 500 retried
    # a rerun asks nothing: every answer comes from the cache
    evaluate_cell(model=str(model), base=str(model), examples=str(examples), spec=params,
                  predictions=str(out / "p2.jsonl"), scores=str(out / "s2.json"), cell=["gpt4", "base", "qa", "0", "0"])
    assert sum(seen.values()) == 5 and open(out / "p2.jsonl").read() == open(out / "p.jsonl").read()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not any(KEY in p.read_text(errors="ignore") for p in written)


def test_a_study_scores_an_api_model_only_as_itself():
    cfg = load_yaml(REPO / "config/studies/barnett2024.yaml")
    study = Study(copy.deepcopy(cfg))
    gpt = [m for m in study.model_names if study.is_api(m)]
    assert gpt == ["gpt4"], "barnett2024 has GPT-4 as an un-fine-tuned baseline, as in the paper"
    cells = study.cells_for("gpt4")
    assert cells and {c.model_tag for c in cells} == {"base"}
    assert len(study.cells_for("mixtral")) > len(cells)
    spec = study.eval_params(cells[0].dataset, 0, 0, "gpt4")
    assert spec["api"]["name"] == "gpt-4" and "OPENAI_API_KEY" == spec["api"]["api_key_env"]
    assert "api" not in study.eval_params(cells[0].dataset, 0, 0, "mixtral")
    cfg["datasets"]["sst2"] = {"task": "sentiment", "source": {"adapter": "jsonl", "path": "x.jsonl"}}
    with pytest.raises(ConfigError, match="'gpt4' is an API model .* scores \\['sst2'\\] by log-likelihood"):
        Study(cfg)
