"""Run untrusted generated code (HumanEval / MBPP tests) in a contained process.

Each program runs in its own process with:
- a wall-clock timeout, after which every process of its user is killed (a fork bomb or a
  daemon that called setsid is found by uid, not by process group);
- rlimits: CPU seconds, address space, file size, open files, process count, no core dumps;
- a fresh working directory and an environment with no inherited variables (no secrets);
- when the runner is root (CI, containers): a private network namespace (only a loopback that
  is down: no network at all), a private mount namespace with fresh tmpfs over /tmp, /var/tmp,
  /dev/shm and /run/lock (world-writable places; the work folder lives in the private /tmp), a
  PID namespace whose PID 1 is the program (it sees no other process to signal, and when it
  exits the kernel kills and reaps whatever it started), and a throw-away uid with no files and
  no right to signal other users' processes (RLIMIT_NPROC applies to it: root ignores it).
Without root (or where a container forbids namespaces), the namespaces and the uid switch are
not available: the program then runs as
the caller's user, with rlimits and a clean environment only (network, files outside the work
folder and the parent are *not* protected). `Outcome.isolation` records which protections
applied; run code judging as root or inside a container to get all of them.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x40000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND = 1, 2, 4, 32, 4096
MS_REC, MS_PRIVATE = 1 << 14, 1 << 18
CANNOT_START = 125  # the wrapper's exit status when the program's interpreter cannot be executed
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
UID_RANGE = (61000, 64999)  # throw-away uids with no passwd entry and no files


class SandboxError(RuntimeError):
    """The sandbox itself failed (no interpreter, no namespace): an error of the job, never a
    failing program."""


@dataclass
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 16
    procs: int = 32
    open_files: int = 64
    output_bytes: int = 65536  # stdout/stderr kept per stream


@dataclass
class Outcome:
    status: str  # pass | fail | timeout | error
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    isolation: dict = field(default_factory=dict)


def default_python() -> str:
    """An interpreter the throw-away uid can execute (a venv under /root is not readable)."""
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(cand, os.X_OK):
            return cand
    return shutil.which("python3") or "python3"


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sandbox: {what}: {os.strerror(err)}")


@functools.lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Root, and allowed to create network, mount and PID namespaces (some containers are not)."""
    if os.geteuid() != 0:
        return False

    def probe():
        _check(_libc().unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID), "unshare")

    try:
        return subprocess.run(["/bin/true"], preexec_fn=probe, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _uids_in_use() -> set[int]:
    uids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    uids.add(int(line.split()[1]))
                    break
        except OSError:
            continue
    return uids


def _pick_uid() -> int:
    busy = _uids_in_use()
    for _ in range(100):
        uid = random.randint(*UID_RANGE)
        if uid not in busy:
            return uid
    raise RuntimeError("sandbox: no free uid")


def live_processes(uid: int) -> list[int]:
    """Pids of `uid`'s processes that still run (zombies hold nothing but a pid; init reaps them)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1").split()[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(status.parent.name))
    return pids


def _kill_uid(uid: int, rounds: int = 100) -> None:
    """SIGKILL every process owned by `uid` until none is left (children, daemons, fork bombs)."""
    for _ in range(rounds):
        pids = live_processes(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


@functools.cache
def interpreter_paths(python: str) -> tuple[str, ...]:
    """The folders an interpreter needs to start: where its executable is (before and after
    resolving links), its prefix (a venv) and its base prefix (the stdlib)."""
    probe = (
        "import json, os, sys; exe = sys.executable; "
        "print(json.dumps([exe, os.path.realpath(exe), sys.prefix, sys.base_prefix]))"
    )
    try:
        out = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise SandboxError(f"sandbox: cannot start the interpreter {python!r}: {exc}") from None
    if out.returncode != 0:
        raise SandboxError(f"sandbox: the interpreter {python!r} failed to start: {out.stderr.strip()[-500:]}")
    exe, real, prefix, base = json.loads(out.stdout)
    folders = [os.path.dirname(os.path.abspath(python)), os.path.dirname(exe), os.path.dirname(real), prefix, base]
    return tuple(dict.fromkeys(os.path.abspath(f) for f in folders))


def hidden_by_private_tmp(folders) -> list[str]:
    """The folders that a fresh tmpfs over PRIVATE_TMP would hide (a venv in a clone under /tmp),
    outermost only: they are bound back, read-only, inside the sandbox."""
    inside = sorted(
        {
            f
            for f in folders
            for t in PRIVATE_TMP
            if os.path.isdir(t) and not os.path.islink(t) and (f + "/").startswith(t.rstrip("/") + "/")
        }
    )
    return [f for i, f in enumerate(inside) if not any((f + "/").startswith(o + "/") for o in inside[:i])]


def _namespaces(code: str, file_mb: int, keep: list[str]):
    """preexec (root only): new network, mount and PID namespaces; fresh tmpfs over the world-
    writable folders, with the interpreters' folders that lived there (`keep`) bound back
    read-only; the program file inside the private /tmp. Runs before the root wrapper execs, so
    the wrapper's first child is PID 1 of the new PID namespace."""

    def setup():
        libc = _libc()
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID), "unshare(net, mount, pid)")
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
        held = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in keep]  # reachable after the tmpfs
        for path in PRIVATE_TMP:
            if os.path.isdir(path) and not os.path.islink(path):
                _check(
                    libc.mount(
                        b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, f"size={file_mb}m,mode=1777".encode()
                    ),
                    f"tmpfs on {path}",
                )
        for path, fd in held:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _check(
                libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND | MS_REC, None), f"bind {path}"
            )
            _check(
                libc.mount(None, path.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, None),
                f"read-only {path}",
            )
            os.close(fd)
        os.mkdir("/tmp/work", 0o700)  # inside the fresh tmpfs: gone with the namespace
        with open("/tmp/work/program.py", "w", encoding="utf-8") as fh:
            fh.write(code)

    return setup


def _set_limits(limits: Limits) -> None:
    mb = 1024 * 1024
    for res, value in (
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_AS, limits.memory_mb * mb),
        (resource.RLIMIT_FSIZE, limits.file_mb * mb),
        (resource.RLIMIT_NPROC, limits.procs),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(res, (value, value))


# The root wrapper: forks the program as PID 1 of the new PID namespace (when it exits, the
# kernel kills and reaps everything it started), drops it to the throw-away uid with the rlimits,
# and exits with its status. It stays root, so the program cannot signal it.
WRAPPER = """
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
pid = os.fork()
if pid == 0:
    for name, value in cfg["rlimits"]:
        resource.setrlimit(getattr(resource, name), (value, value))
    os.chown("/tmp/work", cfg["uid"], cfg["uid"])
    os.chdir("/tmp/work")
    os.setgroups([])
    os.setgid(cfg["uid"])
    os.setuid(cfg["uid"])
    try:
        os.execve(cfg["python"], [cfg["python"], "-I", "program.py"], cfg["env"])
    except OSError as exc:
        os.write(2, f"ftgen-sandbox: cannot start {cfg['python']}: {exc}".encode())
        os._exit(cfg["cannot_start"])
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) % 256 if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"""


def _read_head(path: Path, limit: int) -> str:
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + ("\n[... output truncated]" if len(data) > limit else "")


def _start(cmd: list[str], **kwargs) -> subprocess.Popen:
    try:
        return subprocess.Popen(cmd, **kwargs)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"sandbox: cannot start {cmd[0]}: {exc}") from None


def run_python(code: str, limits: Limits | None = None, python: str | None = None) -> Outcome:
    """Run `code` with `python` in a fresh folder under the limits; classify the outcome.

    pass: exit 0; fail: an AssertionError (a unit test failed); timeout: the wall clock ran out;
    error: anything else (exception, killed by an rlimit, syntax error). When the sandbox cannot
    run the program at all (no interpreter, no namespace) it raises SandboxError: that is not
    the program's fault and must not score as a failing program.
    """
    limits = limits or Limits()
    python = python or default_python()
    if os.sep in python:  # "venv/../bin/python" would need every folder on the way inside the sandbox
        python = os.path.abspath(python)
    wrapper = os.path.abspath(sys.executable)
    root = namespaces_available()  # full isolation; else rlimits + a clean environment only
    # interpreters that live under a folder the private tmpfs covers stay reachable (read-only)
    keep = hidden_by_private_tmp(interpreter_paths(python) + interpreter_paths(wrapper)) if root else []
    uid = _pick_uid() if root else None
    base = Path(tempfile.mkdtemp(prefix="ftgen-sandbox-"))  # outputs (and, without root, the work folder)
    work = base / "work"
    work.mkdir()
    if not root:
        (work / "program.py").write_text(code, encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp/work" if root else str(work),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }
    isolation = {
        "network": "namespace" if root else "none",
        "filesystem": "private tmpfs work folder + own uid" if root else "work folder only (not enforced)",
        "processes": "own PID namespace + other uid" if root else "process group only",
        "user": uid,
        "rlimits": asdict(limits),
    }
    start = time.monotonic()
    status, rc = "error", None
    try:
        with open(base / "stdout", "wb") as so, open(base / "stderr", "wb") as se:
            if root:
                mb = 1024 * 1024
                rlimits = [
                    ["RLIMIT_CPU", limits.cpu_s],
                    ["RLIMIT_AS", limits.memory_mb * mb],
                    ["RLIMIT_FSIZE", limits.file_mb * mb],
                    ["RLIMIT_NPROC", limits.procs],
                    ["RLIMIT_NOFILE", limits.open_files],
                    ["RLIMIT_CORE", 0],
                ]
                cfg = json.dumps(
                    {"uid": uid, "python": python, "env": env, "rlimits": rlimits, "cannot_start": CANNOT_START}
                )
                proc = _start(
                    [wrapper, "-I", "-c", WRAPPER, cfg],
                    cwd="/",
                    env={},
                    stdin=subprocess.DEVNULL,
                    stdout=so,
                    stderr=se,
                    start_new_session=True,
                    preexec_fn=_namespaces(code, limits.file_mb, keep),
                )
            else:
                proc = _start(
                    [python, "-I", "program.py"],
                    cwd=work,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=so,
                    stderr=se,
                    start_new_session=True,
                    preexec_fn=lambda: _set_limits(limits),
                )
            try:
                rc = proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                status = "timeout"
            finally:
                if uid is not None:
                    _kill_uid(uid)  # the namespace's PID 1 among them: the kernel reaps the rest
                else:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.wait()
        wall = time.monotonic() - start
        stdout = _read_head(base / "stdout", limits.output_bytes)
        stderr = _read_head(base / "stderr", limits.output_bytes)
        if root and rc == CANNOT_START and stderr.startswith("ftgen-sandbox: cannot start"):
            raise SandboxError(f"sandbox: {stderr.strip()}")
        if status != "timeout":
            last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            status = "pass" if rc == 0 else "fail" if last.startswith("AssertionError") else "error"
        return Outcome(status, rc, stdout, stderr, round(wall, 3), isolation)
    finally:
        shutil.rmtree(base, ignore_errors=True)
