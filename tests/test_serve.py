"""The model server behind `ftgen evaluate` (ftgen.serve): cells scored through it, each by its
own `python -m ftgen evaluate` process as Snakemake runs them, load the model once and write
exactly what in-process evaluation writes; a failing cell fails alone; a rewritten model
folder gets a new server; idle servers exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftgen.serve import server_key
from helpers import PP, eval_spec

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _evaluate(env, model, examples, spec, out: Path, name: str, check=True):
    cmd = [sys.executable, "-m", "ftgen", "evaluate", "--model", str(model), "--base", str(model)]
    cmd += ["--examples", str(examples), "--spec", json.dumps(spec), "--cell", "tiny", "base", name, "0", "0"]
    cmd += ["--predictions", str(out / f"{name}.jsonl"), "--scores", str(out / f"{name}.json"), "--threads", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _scores(path: Path) -> dict:
    res = json.loads(path.read_text())
    res.pop("wall_time_s")
    compute = res.pop("compute")  # timings differ run to run; the tokens run must not
    res["tokens_run"] = {k: v for k, v in compute.items() if k.endswith("_tokens")}
    assert res["manifest"].pop("argv")[1] == "evaluate"  # the job's command, not the server's
    res["manifest"].pop("created")
    return res


@pytest.fixture
def server_env(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC, "FTGEN_SERVER_DIR": str(tmp_path / "servers")}
    env["FTGEN_EVAL_SERVER_IDLE"] = "20"
    yield env
    for sock in (tmp_path / "servers").glob("*.sock"):  # stop what the test left running
        from ftgen.serve import _send

        try:
            _send(sock, {"quit": True}, timeout=5)
        except OSError:
            pass


def _loads(server_dir: Path) -> list[str]:
    return [
        line for log in server_dir.glob("*.log") for line in log.read_text().splitlines() if line.startswith("loaded")
    ]


def test_the_client_takes_exactly_evaluate_cells_arguments():
    import inspect

    from ftgen.evaluate import evaluate_cell
    from ftgen.serve import evaluate

    assert inspect.signature(evaluate).parameters.keys() == inspect.signature(evaluate_cell).parameters.keys()


def test_cells_share_one_load_and_score_as_in_process(tiny_model, examples, tmp_path, server_env):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    spec = eval_spec(PP, ["accuracy", "macro_f1"], shots=2, batch_size=3)
    served, local = tmp_path / "served", tmp_path / "local"
    served.mkdir(), local.mkdir()
    for name in ("a", "b", "c"):
        _evaluate(server_env, model, examples, spec, served, name)
    assert len(_loads(tmp_path / "servers")) == 1  # three cell processes, one model load
    _evaluate({**server_env, "FTGEN_EVAL_SERVER": "0"}, model, examples, spec, local, "a")
    assert (served / "a.jsonl").read_text() == (local / "a.jsonl").read_text()
    assert _scores(served / "a.json") == _scores(local / "a.json")
    assert _scores(served / "b.json")["scores"] == _scores(served / "a.json")["scores"]


def test_a_failing_cell_fails_alone_and_a_rebuilt_model_gets_a_new_server(tiny_model, examples, tmp_path, server_env):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    out = tmp_path / "out"
    out.mkdir()
    ok = eval_spec(PP, ["accuracy"])
    bad = eval_spec(PP, ["accuracy"], shots=99)  # more shots than the few-shot pool holds
    proc = _evaluate(server_env, model, examples, bad, out, "bad", check=False)
    assert proc.returncode != 0 and "few-shot pool has" in proc.stderr
    assert not (out / "bad.json").exists()
    _evaluate(server_env, model, examples, ok, out, "good")  # the same server goes on
    assert len(_loads(tmp_path / "servers")) == 1
    key = server_key(str(model), str(model), 1)
    time.sleep(0.01)
    (model / "config.json").touch()  # a rewritten model folder: never the old server's weights
    assert server_key(str(model), str(model), 1) != key
    _evaluate(server_env, model, examples, ok, out, "again")
    assert len(_loads(tmp_path / "servers")) == 2


def test_an_idle_server_exits(tiny_model, examples, tmp_path, server_env):
    out = tmp_path / "out"
    out.mkdir()
    _evaluate(
        {**server_env, "FTGEN_EVAL_SERVER_IDLE": "1"}, tiny_model, examples, eval_spec(PP, ["accuracy"]), out, "a"
    )
    deadline = time.monotonic() + 30
    while list((tmp_path / "servers").glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list((tmp_path / "servers").glob("*.sock"))
    assert "exiting" in next((tmp_path / "servers").glob("*.log")).read_text()
