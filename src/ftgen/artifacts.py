"""Artifact hygiene: atomic writes (no half-written outputs), per-artifact manifests and checked
reading back. Depends on no other ftgen module, so every layer (the planner included) can use it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextvars import ContextVar
from importlib import metadata
from pathlib import Path
from typing import Any

# the checkout this package runs from (src/ftgen/ -> the repo): its git revision goes in manifests
REPO_ROOT = Path(__file__).resolve().parents[2]
# the command a manifest names: this process's argv, or (in a model server, per cell and thread)
# the argv of the job that sent the cell
COMMAND: ContextVar[list[str] | None] = ContextVar("COMMAND", default=None)

TRACKED_PACKAGES = (
    "ftgen",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "polars",
    "pyarrow",
    "snakemake",
    "deepspeed",
    "rouge-score",
    "sacrebleu",
    "gguf",
    "numpy",
)


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable config slice (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder's (relative name, file sha256) list."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _user_mode(path: Path, directory: bool) -> None:
    """mkstemp / mkdtemp create 0600 / 0700 (private temp files); an artifact gets the mode any
    file the user creates gets (umask), so a shared cluster project folder stays readable."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temp folder next to `final`; it replaces `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        _user_mode(tmp, directory=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temp file next to `final`; rename it into place only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        _user_mode(Path(tmp), directory=False)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_file(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# ----------------------------------------------------------------------------- reading artifacts back
class ArtifactError(RuntimeError):
    """An artifact a step reads that is missing, truncated or not what its rule writes: the
    message names the file (or folder) and the command that rebuilds it."""


def rebuild_hint(path: str | Path, missing: bool = False) -> str:
    """How to rebuild an artifact: forcing the job that writes it (or, as every rule declares
    what it reads, deleting it: the next `snakemake` reruns that job and what depends on it)."""
    target = shlex.quote(str(path))
    force = f"`snakemake {target} --force` (plus the study's --configfile)"
    if missing:
        return f"rerun snakemake, which rebuilds it, or rebuild it with {force}"
    return f"rebuild it with {force}, then rerun snakemake; or delete it and rerun snakemake"


def damaged(path: str | Path, why: str) -> ArtifactError:
    return ArtifactError(f"{path} is damaged ({why}): {rebuild_hint(path)}")


def _text(path: str | Path) -> str:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: {rebuild_hint(path, missing=True)}") from None
    except IsADirectoryError:
        raise damaged(path, "a folder where a file should be") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise damaged(path, f"line {line}: not UTF-8 at byte {exc.start}") from None


def _missing(obj: dict, required) -> list[str]:
    return [k for k in required if k not in obj]


def read_json_artifact(path: str | Path, required: tuple[str, ...] = ()) -> dict:
    """A JSON object written by a rule (scores.json, judge.json, a card), checked: it parses, it is
    an object, it has the `required` keys; else an ArtifactError naming it and how to rebuild it."""
    text = _text(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise damaged(path, f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise damaged(path, "not a JSON object")
    if missing := _missing(obj, required):
        raise damaged(path, f"key {missing[0]!r} missing")
    return obj


def read_jsonl_artifact(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """The rows of a JSONL file written by a rule (predictions.jsonl, judgements.jsonl), checked
    line by line like `read_json_artifact`."""
    rows = []
    for lineno, line in enumerate(_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise damaged(path, f"line {lineno} column {exc.colno}: {exc.msg}") from None
        if not isinstance(row, dict):
            raise damaged(path, f"line {lineno}: not a JSON object")
        if missing := _missing(row, required):
            raise damaged(path, f"line {lineno}: key {missing[0]!r} missing")
        rows.append(row)
    return rows


def code_revision() -> str:
    """git commit of the pipeline (suffixed `-dirty` with local edits), else the package version."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return f"ftgen-{package_version('ftgen')}"


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        if (v := package_version(name)) is not None:
            out[name] = v
    return out


def manifest(
    kind: str,
    params: Any,
    inputs: dict[str, str | Path] | None = None,
    seed: int | None = None,
    input_sha256: dict[str, str] | None = None,
    **extra: Any,
) -> dict:
    """The provenance record every artifact carries next to it."""
    sums = dict(input_sha256 or {})
    for key, path in (inputs or {}).items():
        if key not in sums and path and Path(path).exists():
            sums[key] = sha256_path(path)
    return {
        "kind": kind,
        "config_hash": config_hash(params),
        "params": params,
        "seed": seed,
        "code_revision": code_revision(),
        "packages": package_versions(),
        "inputs": {k: str(v) for k, v in (inputs or {}).items()},
        "input_sha256": sums,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": COMMAND.get() or sys.argv,
        **extra,
    }


def folder_state(folder: str) -> list:
    """(name, size, mtime_ns) of every file below `folder`: changes whenever it is rewritten."""
    root = Path(folder).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [str(root)] + [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
