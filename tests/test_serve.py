"""The model server behind `ftgen evaluate` (ftgen.serve): cells scored through it, each by its
own `python -m ftgen evaluate` process as Snakemake runs them, load the model once and write
exactly what in-process evaluation writes; a failing cell fails alone; a rewritten model
folder gets a new server; idle servers exit; a request in flight blocks neither a ping nor
another client, cells of one model run at once on CPU, and a server asked to exit answers what
it holds first."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ftgen import serve
from ftgen.serve import _send, server_for, server_key, servers_to_retire
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


def test_cells_sent_at_once_score_as_in_process(tiny_model, examples, tmp_path, server_env):
    """Two jobs' cells of one model at the same time: one server, scored concurrently on CPU,
    each cell's files as in-process evaluation writes them."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    served, local = tmp_path / "served", tmp_path / "local"
    served.mkdir(), local.mkdir()
    specs = {"k0": eval_spec(PP, ["accuracy"], batch_size=3), "k2": eval_spec(PP, ["accuracy"], shots=2, batch_size=5)}
    server_for(str(model), str(model), 1)  # started first, so that both clients find it
    jobs = [
        threading.Thread(target=_evaluate, args=(server_env, model, examples, spec, served, name))
        for name, spec in specs.items()
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert len(_loads(tmp_path / "servers")) == 1
    for name, spec in specs.items():
        _evaluate({**server_env, "FTGEN_EVAL_SERVER": "0"}, model, examples, spec, local, name)
        assert (served / f"{name}.jsonl").read_text() == (local / f"{name}.jsonl").read_text()
        assert _scores(served / f"{name}.json") == _scores(local / f"{name}.json")


@pytest.mark.parametrize("device, at_once", [("cpu", True), ("cuda", False)])
def test_cells_run_at_once_on_cpu_and_one_at_a_time_on_a_gpu(device, at_once, tmp_path, monkeypatch):
    """On CPU a server runs the cells of all waiting clients at once: Snakemake gave each waiting
    job its own cores, and scoring them one at a time left a 2-core laptop's second core idle
    while two cells of one model waited. A GPU scores one cell at a time. Each cell's manifest
    names its own job's command. (`evaluate_cell` is replaced by one that waits on an event, so
    that one cell is held inside the server while the other is sent.)"""
    from ftgen import evaluate as ev
    from ftgen.artifacts import COMMAND

    release, started, finished = threading.Event(), [], []

    def cell(**kwargs):
        name = kwargs["cell"][2]
        started.append(name)
        if name == "held":
            assert release.wait(30)
        finished.append(name)
        return {"argv": COMMAND.get()}

    monkeypatch.setattr(ev, "evaluate_cell", cell)
    server = serve._Server(str(tmp_path), str(tmp_path), str(tmp_path / "s.sock"), 60, device)
    replies = {}

    def send(name):
        kwargs = {"model": str(tmp_path), "base": str(tmp_path), "cell": ["m", "base", name, "0", "0"]}
        replies[name] = server.answer({"evaluate": kwargs, "argv": ["ftgen", "evaluate", name]})

    held = threading.Thread(target=send, args=("held",))
    held.start()
    deadline = time.monotonic() + 10
    while "held" not in started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started == ["held"]
    other = threading.Thread(target=send, args=("other",))
    other.start()
    other.join(timeout=0.5 if not at_once else 10)
    assert other.is_alive() is not at_once  # on a GPU it waits for the held cell
    release.set()
    held.join(timeout=10), other.join(timeout=10)
    assert finished == (["other", "held"] if at_once else ["held", "other"])
    assert {name: r["result"]["argv"][-1] for name, r in replies.items()} == {"held": "held", "other": "other"}
    assert server.served == 2


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
    while (socks := list((tmp_path / "servers").glob("*.sock"))) and time.monotonic() < deadline:
        for sock in socks:  # other clients looking for room ping it: that is not work
            with contextlib.suppress(OSError, ValueError, serve.ServerError):
                _send(sock, {"ping": True}, timeout=5)
        time.sleep(0.2)
    assert not list((tmp_path / "servers").glob("*.sock"))
    # the socket goes first (new clients start a successor), the exit line once held requests are answered
    log = next((tmp_path / "servers").glob("*.log"))
    while "exiting" not in log.read_text() and time.monotonic() < deadline + 10:
        time.sleep(0.1)
    assert "idle for 1s after 1 cells: exiting" in log.read_text()


def _cell_request(model: Path, examples: Path, out: Path, name: str) -> bytes:
    kwargs = {"model": str(model), "base": str(model), "examples": str(examples)}
    kwargs |= {"spec": eval_spec(PP, ["accuracy"]), "predictions": str(out / f"{name}.jsonl")}
    kwargs |= {"scores": str(out / f"{name}.json"), "cell": ["tiny", "base", name, "0", "0"], "threads": 1}
    return json.dumps({"evaluate": kwargs, "argv": ["ftgen", "evaluate"]}).encode() + b"\n"


def test_a_request_in_flight_blocks_neither_pings_nor_other_clients(
    tiny_model, examples, tmp_path, server_env, monkeypatch
):
    """A client mid-request (here: one that has sent half its request) held the single-threaded
    server, so other clients' 5 s pings timed out, each started a second server for the same
    model and unlinked the first one's socket (the GPU study rehearsal: 3-4 loads of one model,
    servers dying on BrokenPipe and FileNotFoundError). Now pings answer at once and a second
    client's cell is scored by the same server; then the first request completes."""
    monkeypatch.setenv("FTGEN_SERVER_DIR", server_env["FTGEN_SERVER_DIR"])
    out = tmp_path / "out"
    out.mkdir()
    sock_path = server_for(str(tiny_model), str(tiny_model), 1)
    request = _cell_request(tiny_model, examples, out, "slow")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
        held.connect(str(sock_path))
        held.sendall(request[:20])
        start = time.monotonic()
        assert _send(sock_path, {"ping": True}, timeout=5)["ok"] is True
        assert time.monotonic() - start < 2
        _evaluate(server_env, tiny_model, examples, eval_spec(PP, ["accuracy"]), out, "other")
        held.sendall(request[20:])
        reply = json.loads(held.makefile().readline())
    assert reply["ok"], reply
    assert (
        json.loads((out / "slow.json").read_text())["scores"] == json.loads((out / "other.json").read_text())["scores"]
    )
    assert len(_loads(tmp_path / "servers")) == 1


def test_a_server_asked_to_exit_answers_the_requests_it_holds(tiny_model, examples, tmp_path, server_env, monkeypatch):
    """`quit` (a client retiring the least recently used server) takes the socket away from new
    clients at once, answers the request already in flight, then exits."""
    monkeypatch.setenv("FTGEN_SERVER_DIR", server_env["FTGEN_SERVER_DIR"])
    out = tmp_path / "out"
    out.mkdir()
    sock_path = server_for(str(tiny_model), str(tiny_model), 1)
    request = _cell_request(tiny_model, examples, out, "held")
    replies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
        held.connect(str(sock_path))
        held.sendall(request[:20])
        assert _send(sock_path, {"quit": True}, timeout=5) == {"ok": True}
        deadline = time.monotonic() + 10
        while sock_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sock_path.exists()  # new clients start a successor instead of queueing here
        reader = threading.Thread(target=lambda: replies.append(held.makefile().readline()))
        reader.start()
        held.sendall(request[20:])
        reader.join(timeout=120)
    assert json.loads(replies[0])["ok"]
    assert (out / "held.json").exists()
    log = next((tmp_path / "servers").glob("*.log"))
    deadline = time.monotonic() + 10
    while "asked to exit after 1 cells: exiting" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "asked to exit after 1 cells: exiting" in log.read_text()


GIB = 1 << 30


@pytest.mark.parametrize(
    "servers, available, fixed, retired",
    [
        ([], 8 * GIB, None, 0),
        (["cpu"] * 3, 20 * GIB, None, 0),  # CPU with room: models stay loaded
        (["cpu"] * 8, 20 * GIB, None, 1),  # at most 8: the oldest makes room
        (["cpu"] * 3, 4 * GIB, None, 3),  # 1 GiB each; one more must leave 6 of 24 GiB free
        (["cpu"] * 3, 5 * GIB, None, 2),
        (["cpu"] * 3, 7 * GIB, None, 0),
        (["cuda", "cuda"], 20 * GIB, None, 1),  # a GPU holds 2
        (["cuda"], 20 * GIB, None, 0),
        (["cpu"] * 3, 1 * GIB, "3", 1),  # FTGEN_EVAL_SERVERS fixes the count, memory aside
    ],
)
def test_which_servers_make_room(servers, available, fixed, retired, monkeypatch):
    monkeypatch.setattr(serve, "MAX_SERVERS", fixed)
    pool = [{"rss": GIB, "device": device, "age": i} for i, device in enumerate(servers)]
    out = servers_to_retire(pool, available, total=24 * GIB)
    assert out == pool[:retired]  # least recently used first
