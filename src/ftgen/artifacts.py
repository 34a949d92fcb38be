"""Artifact hygiene: atomic writes (no half-written outputs) and per-artifact manifests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from .config import REPO_ROOT, config_hash

TRACKED_PACKAGES = (
    "ftgen", "torch", "transformers", "peft", "accelerate", "datasets", "polars", "pyarrow",
    "snakemake", "deepspeed", "rouge-score", "sacrebleu", "gguf", "numpy",
)


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


def code_revision() -> str:
    """git commit of the pipeline (suffixed `-dirty` with local edits), else the package version."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
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
        "argv": sys.argv,
        **extra,
    }
