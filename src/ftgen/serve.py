"""Evaluation cells share one loaded model: `ftgen evaluate` hands its cell to a model server.

Every eval cell stays its own Snakemake job (a cell is a target; adding a dataset or changing one
cell's params reruns exactly those cells; a failed cell loses nothing else), but loading a
checkpoint and importing torch cost more than scoring a few hundred examples. So the `evaluate`
step is a light client: it finds the server for its model folder on this machine, starting one
if none runs, sends the cell's arguments over a Unix socket and waits. The server loads the
model once, runs `ftgen.evaluate.evaluate_cell` for each cell (the same function, so the same
numbers as in-process) and exits after `FTGEN_EVAL_SERVER_IDLE` seconds without work. On CPU the
cells of waiting clients run at once, each on its job's threads (the cores Snakemake gave the
waiting jobs; one at a time, a 2-core laptop scoring two cells of one model left a core idle); on
a GPU one at a time.

A server is keyed by the model and base folders *and their files' sizes and mtimes*: a rebuilt
fine-tune gets a new server, never a stale model. Before one more starts, the least recently
used are asked to exit so that at most 2 run on a GPU machine, or on CPU at most 8 that leave a
quarter of the memory free (`servers_to_retire`; `FTGEN_EVAL_SERVERS` fixes the count).
Each connection has its own thread, so a ping is answered while a cell runs.
`FTGEN_EVAL_SERVER=0` evaluates in-process (as does an API model, which has no
weights to load). On SLURM the cells of one model tag are one group job (workflow/rules/
evaluate.smk), so one allocation loads the model once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import psutil

from .artifacts import COMMAND, folder_state
from .step import EvalCell, Input, Json, Output, Threads

IDLE_S = float(os.environ.get("FTGEN_EVAL_SERVER_IDLE", "60"))
# servers kept per machine: a GPU holds 2 models; CPU RAM holds as many as leave RESERVE free
MAX_SERVERS = os.environ.get("FTGEN_EVAL_SERVERS")
GPU_SERVERS, CPU_SERVERS = 2, 8
RESERVE = 0.25  # share of the machine's memory no new CPU server may take
START_TIMEOUT_S = float(os.environ.get("FTGEN_EVAL_SERVER_START", "900"))


class ServerError(RuntimeError):
    """The cell failed in the server (its traceback is the message) or the server died."""


def server_dir() -> Path:
    """Per user and machine (sockets are node-local): $FTGEN_SERVER_DIR, else the temp dir."""
    root = os.environ.get("FTGEN_SERVER_DIR") or os.path.join(tempfile.gettempdir(), f"ftgen-eval-{os.getuid()}")
    path = Path(root)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def server_key(model: str, base: str, threads: int | None) -> str:
    state = [folder_state(model), folder_state(base), threads, os.environ.get("CUDA_VISIBLE_DEVICES")]
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:20]


def _send(sock_path: Path, message: dict, timeout: float | None = None) -> dict:
    """One request, one JSON-line reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock_path))
        conn.sendall(json.dumps(message).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(1 << 16)
            if not chunk:
                raise ServerError(f"model server {sock_path} closed the connection without an answer")
            reply += chunk
    return json.loads(reply)


def _stats(sock_path: Path) -> dict | None:
    """A live server's {"rss", "device"}, None if it does not answer."""
    try:
        reply = _send(sock_path, {"ping": True}, timeout=15)
    except (OSError, ValueError, ServerError):
        return None
    return reply if reply.get("ok") else None


def _alive(sock_path: Path) -> bool:
    return _stats(sock_path) is not None


def servers_to_retire(servers: list[dict], available: int, total: int) -> list[dict]:
    """The least recently used servers (`servers` oldest first, each {"rss", "device"}) to ask
    to exit before one more starts: GPU machines keep `GPU_SERVERS` (device memory), CPU ones up
    to `CPU_SERVERS` while the newcomer, sized as the largest running one, leaves `RESERVE` of
    the memory free. `FTGEN_EVAL_SERVERS` fixes the count instead. Cells are scheduled across
    many models at once: the GPU study rehearsal loaded 100 servers for 164 cells with 2 kept,
    52 with this rule."""
    fixed = MAX_SERVERS is not None
    if fixed:
        cap = int(MAX_SERVERS)
    else:
        cap = GPU_SERVERS if any(s["device"] != "cpu" for s in servers) else CPU_SERVERS
    need = max((s["rss"] for s in servers), default=0)
    alive, retire = list(servers), []
    while alive:
        too_many = len(alive) >= cap
        too_big = not fixed and available - need < RESERVE * total
        if not (too_many or too_big):
            break
        retire.append(alive.pop(0))
        available += retire[-1]["rss"]
    return retire


def _retire_idle_servers(directory: Path) -> None:
    """Ask servers to exit, least recently used first, to make room for one more
    (`servers_to_retire`). A busy one first answers the requests it holds."""
    socks = sorted(directory.glob("*.sock"), key=lambda p: p.stat().st_mtime if p.exists() else 0)
    servers = [{**stats, "sock": sock} for sock in socks if (stats := _stats(sock))]
    memory = psutil.virtual_memory()
    for server in servers_to_retire(servers, memory.available, memory.total):
        with contextlib.suppress(OSError, ValueError, ServerError):
            _send(server["sock"], {"quit": True}, timeout=5)


def _start_server(directory: Path, key: str, model: str, base: str, threads: int | None) -> Path:
    sock_path = directory / f"{key}.sock"
    log_path = directory / f"{key}.log"
    sock_path.unlink(missing_ok=True)
    _retire_idle_servers(directory)
    cmd = [sys.executable, "-m", "ftgen.serve", "--model", model, "--base", base, "--socket", str(sock_path)]
    cmd += ["--idle", str(IDLE_S)] + (["--threads", str(threads)] if threads else [])
    with open(log_path, "ab") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _alive(sock_path):
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise ServerError(f"model server for {model} exited with status {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            proc.kill()
            raise ServerError(f"model server for {model} not ready after {START_TIMEOUT_S:.0f} s ({log_path})")
        time.sleep(0.2)
    return sock_path


def server_for(model: str, base: str, threads: int | None) -> Path:
    """The socket of the running server for this model folder, started if there is none."""
    directory = server_dir()
    key = server_key(model, base, threads)
    sock_path = directory / f"{key}.sock"
    with open(directory / f"{key}.lock", "w") as lock:  # one client starts it; the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _alive(sock_path):
            sock_path = _start_server(directory, key, str(Path(model).resolve()), str(Path(base).resolve()), threads)
    return sock_path


def evaluate(
    *,
    model: Input,
    base: Input,
    examples: Input,
    spec: Json,
    predictions: Output,
    scores: Output,
    cell: EvalCell,
    threads: Threads = None,
    log=print,
) -> dict:
    """Score one cell (`ftgen.evaluate.evaluate_cell`), in this machine's server for `model`."""
    # the arguments of evaluate_cell (same signature; importing it here would import torch)
    kwargs = {k: v for k, v in locals().items() if k != "log"}
    if spec.get("api") or os.environ.get("FTGEN_EVAL_SERVER", "1") == "0":
        from .evaluate import evaluate_cell

        return evaluate_cell(**kwargs, log=log)
    absolute = {k: str(Path(v).resolve()) for k, v in kwargs.items() if k in ("examples", "predictions", "scores")}
    for attempt in range(2):  # a server that retired between our check and our request: start anew
        sock_path = server_for(model, base, threads)
        log(f"model server {sock_path}")
        try:
            reply = _send(sock_path, {"evaluate": {**kwargs, **absolute}, "argv": sys.argv})
        except (OSError, ServerError):
            if attempt:
                raise
            continue
        for line in reply.get("log", []):
            log(line)
        if not reply["ok"]:
            raise ServerError(reply["error"])
        return reply["result"]
    raise ServerError(f"no model server for {model} answered")


class _Server:
    """One model, many connections: every connection gets a thread, so a ping is answered while
    a cell runs (a client that waited on a busy server took it for dead and started a second
    one). Cells run concurrently on CPU (each client job holds the cores its cell computes on) and
    one at a time on a GPU (`cell_lock`). Exits when idle for `idle` seconds, or when asked to,
    once no request is in flight."""

    def __init__(self, model: str, base: str, sock_path: str, idle: float, device: str):
        self.model, self.base, self.sock_path, self.idle, self.device = model, base, sock_path, idle, device
        self.cell_lock = contextlib.nullcontext() if device == "cpu" else threading.Lock()
        self.state = threading.Condition()
        self.in_flight = 0
        self.last_done = time.monotonic()
        self.retiring = False
        self.served = 0

    def should_exit(self) -> str | None:
        """Why to stop taking connections now, or None."""
        with self.state:
            if self.retiring:
                return "asked to exit"
            if not self.in_flight and time.monotonic() - self.last_done >= self.idle:
                return f"idle for {self.idle:.0f}s"
        return None

    def start(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        with self.state:
            self.in_flight += 1
        threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def wait_done(self) -> None:
        with self.state:
            self.state.wait_for(lambda: not self.in_flight)

    def handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                request = b""
                while not request.endswith(b"\n"):
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        return
                    request += chunk
                reply = self.answer(json.loads(request))
                with contextlib.suppress(OSError):  # the client may have given up or been killed
                    conn.sendall(json.dumps(reply).encode() + b"\n")
        finally:
            with self.state:
                self.in_flight -= 1
                self.state.notify_all()

    def answer(self, message: dict) -> dict:
        if "ping" in message:
            return {"ok": True, "rss": psutil.Process().memory_info().rss, "device": self.device}
        if "quit" in message:
            with self.state:
                self.retiring = True
            return {"ok": True}
        from . import evaluate as ev

        kwargs = message["evaluate"]
        if Path(kwargs["model"]).resolve() != Path(self.model) or Path(kwargs["base"]).resolve() != Path(self.base):
            return {"ok": False, "error": "wrong model server"}
        lines: list[str] = []
        with self.cell_lock:
            COMMAND.set(message["argv"])  # manifests name the job's command (this thread's context)
            try:
                reply = {"ok": True, "result": ev.evaluate_cell(**kwargs, log=lines.append), "log": lines}
            except Exception:  # the cell fails, the server goes on with the next one
                reply = {"ok": False, "error": traceback.format_exc(), "log": lines}
        with self.state:  # pings (other clients looking for room) do not keep a server alive
            self.served += 1
            self.last_done = time.monotonic()
        print(f"cell {kwargs['cell']}: {'ok' if reply['ok'] else 'FAILED'}", flush=True)
        with contextlib.suppress(OSError):  # least recently used servers retire first
            os.utime(self.sock_path)
        return reply


def serve(model: str, base: str, sock_path: str, idle: float, threads: int | None) -> None:
    """Load the model once, then evaluate cells (at once on CPU, one at a time on a GPU) until idle
    for `idle` seconds."""
    from . import evaluate as ev
    from .modeling import default_device, set_threads

    set_threads(threads)
    start = time.time()
    device = default_device()
    ev.preload(model, base, device)
    if device.type == "cpu":  # the CPU peak MFU divides by: measured once, before cells share the cores
        from .compute import device_peak
        from .modeling import resolve_bf16

        device_peak(device, resolve_bf16("auto", device))
    print(f"loaded {model} (base {base}) in {time.time() - start:.1f}s", flush=True)
    server = _Server(model, base, sock_path, idle, device.type)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    bound = os.stat(sock_path).st_ino
    listener.listen(64)
    listener.settimeout(0.2)  # how often the exit conditions are looked at
    try:
        while not (reason := server.should_exit()):
            with contextlib.suppress(TimeoutError):
                server.start(listener.accept()[0])
        # new clients find no socket (and start a successor); those already queued are answered
        _unlink_own(sock_path, bound)
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                server.start(listener.accept()[0])
        server.wait_done()
        print(f"{reason} after {server.served} cells: exiting", flush=True)
    finally:
        listener.close()
        _unlink_own(sock_path, bound)


def _unlink_own(sock_path: str, inode: int) -> None:
    """Remove the socket file if it is still this server's (a successor may have bound the path)."""
    with contextlib.suppress(OSError):
        if os.stat(sock_path).st_ino == inode:
            os.unlink(sock_path)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ftgen.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--idle", type=float, default=IDLE_S)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    serve(args.model, args.base, args.socket, args.idle, args.threads)


if __name__ == "__main__":
    main()
