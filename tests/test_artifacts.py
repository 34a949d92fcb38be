"""Atomic writes, manifests and checked reading back (ftgen.artifacts), on real files."""

import ast
import hashlib
import json
import os
from pathlib import Path

import pytest

import ftgen.artifacts as artifacts
from ftgen.artifacts import (
    ArtifactError,
    atomic_dir,
    atomic_file,
    config_hash,
    manifest,
    read_json,
    read_json_artifact,
    read_jsonl_artifact,
    sha256_file,
    sha256_path,
    write_json,
)


def leftovers(folder: Path) -> list[str]:
    """Temp files / folders an atomic write would leave next to its target."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_file_appears_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with atomic_file(target) as fh:
        fh.write("a,b\n")
        assert not target.exists()  # written next to it, renamed at the end
    assert target.read_text() == "a,b\n" and leftovers(target.parent) == []
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask()  # the user's mode, not mkstemp's 0600


def test_atomic_file_leaves_the_old_file_and_no_temp_when_the_block_raises(tmp_path):
    target = tmp_path / "scores.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_file(target) as fh:
            fh.write("half of the new")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "new.bin", "wb") as fh:
            fh.write(b"\x00")
            raise RuntimeError
    assert not (tmp_path / "new.bin").exists() and leftovers(tmp_path) == []


def test_atomic_dir_replaces_the_folder_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"1")
    assert [p.name for p in target.iterdir()] == ["weights.bin"]
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask()
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "weights.bin").write_bytes(b"2")
            (tmp / "half.bin").write_bytes(b"")
            raise ValueError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["weights.bin"]
    assert (target / "weights.bin").read_bytes() == b"1" and leftovers(tmp_path) == []
    with atomic_dir(target) as tmp:  # a finished block replaces the whole old folder
        (tmp / "other.bin").write_bytes(b"3")
    assert [p.name for p in target.iterdir()] == ["other.bin"] and leftovers(tmp_path) == []


def test_write_json_is_sorted_indented_and_reads_back(tmp_path):
    path = tmp_path / "card.json"
    write_json(path, {"b": 1, "a": [1, 2], "when": Path("x")})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1,\n  "when": "x"\n}\n'
    assert read_json(path) == {"a": [1, 2], "b": 1, "when": "x"}


# ----------------------------------------------------------------------------- hashes and manifests
def test_config_hash_is_stable_under_key_order_and_pinned():
    a = {"b": [1, 2], "a": {"y": None, "x": 1.5}}
    b = {"a": {"x": 1.5, "y": None}, "b": [1, 2]}
    assert config_hash(a) == config_hash(b) == "0d5fb6d7e1eaaeaf"  # manifests and checkpoint stamps compare it
    assert config_hash({**a, "b": [2, 1]}) != config_hash(a)  # list order is content
    assert len(config_hash({})) == 16


def test_sha256_of_files_and_folders(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "x.txt").write_text("hello\n")
    (tmp_path / "d" / "sub" / "y.txt").write_text("y")
    assert sha256_file(tmp_path / "d" / "x.txt") == hashlib.sha256(b"hello\n").hexdigest()
    assert sha256_path(tmp_path / "d" / "x.txt") == sha256_file(tmp_path / "d" / "x.txt")
    before = sha256_path(tmp_path / "d")
    assert sha256_path(tmp_path / "d") == before
    (tmp_path / "d" / "sub" / "y.txt").rename(tmp_path / "d" / "sub" / "z.txt")
    assert sha256_path(tmp_path / "d") != before  # names count, not only contents


def test_manifest_records_params_hash_inputs_and_environment(tmp_path):
    data = tmp_path / "examples.parquet"
    data.write_bytes(b"rows")
    params = {"name": "a1", "split": {"seed": 0}}
    m = manifest(
        "dataset",
        params,
        inputs={"examples": data, "absent": tmp_path / "nope", "none": ""},
        seed=3,
        input_sha256={"asset": "f" * 64},
        rows=12,
    )
    assert m["kind"] == "dataset" and m["params"] == params and m["seed"] == 3 and m["rows"] == 12
    assert m["config_hash"] == config_hash(params)
    assert m["inputs"] == {"examples": str(data), "absent": str(tmp_path / "nope"), "none": ""}
    # files that exist are hashed; a given sha256 is kept; a path that does not exist is not hashed
    assert m["input_sha256"] == {"asset": "f" * 64, "examples": hashlib.sha256(b"rows").hexdigest()}
    assert m["packages"]["python"] and m["code_revision"] and m["created"] and isinstance(m["argv"], list)
    json.dumps(m)  # what write_json stores


def test_artifacts_imports_no_other_ftgen_module():
    """Every layer writes artifacts, the planner included: artifacts depends on none of them."""
    tree = ast.parse(Path(artifacts.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m == "" or m.split(".")[0] == "ftgen" or m in ("config", "study")]
    assert (artifacts.REPO_ROOT / "src" / "ftgen" / "artifacts.py").exists()


# ----------------------------------------------------------------------------- reading artifacts back
def hint(path: Path) -> str:
    return f"`snakemake {path} --force`"


@pytest.mark.parametrize(
    "text, why",
    [
        ('{"cell": {"model": "m"', "line 1 column 23: Expecting"),  # truncated
        ("[1, 2]", "not a JSON object"),
        ('{"scores": {}}', "key 'cell' missing"),
    ],
)
def test_read_json_artifact_names_the_damage_and_the_rebuild(tmp_path, text, why):
    path = tmp_path / "scores.json"
    path.write_text(text)
    with pytest.raises(ArtifactError) as err:
        read_json_artifact(path, ("cell", "scores"))
    msg = str(err.value)
    assert msg.startswith(f"{path} is damaged (") and why in msg and hint(path) in msg


def test_read_json_artifact_missing_not_utf8_and_folder(tmp_path):
    with pytest.raises(ArtifactError, match=r"nope.json is missing: rerun snakemake, which rebuilds it"):
        read_json_artifact(tmp_path / "nope.json")
    bad = tmp_path / "card.json"
    bad.write_bytes(b'{"a":\n "\xff"}')
    with pytest.raises(ArtifactError, match=r"card.json is damaged \(line 2: not UTF-8 at byte 8\)"):
        read_json_artifact(bad)
    with pytest.raises(ArtifactError, match="a folder where a file should be"):
        read_json_artifact(tmp_path)
    good = tmp_path / "ok.json"
    good.write_text('{"cell": 1, "extra": 2}')
    assert read_json_artifact(good, ("cell",)) == {"cell": 1, "extra": 2}


def test_read_jsonl_artifact_checks_each_line(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "a", "scores": {}}\n\n{"id": "b", "scores": {}}\n')
    assert [r["id"] for r in read_jsonl_artifact(path, ("id", "scores"))] == ["a", "b"]  # blank lines skipped
    path.write_text('{"id": "a", "scores": {}}\n{"id": "b", "sco')  # cut off mid-line
    with pytest.raises(ArtifactError) as err:
        read_jsonl_artifact(path, ("id",))
    assert f"{path} is damaged (line 2 column" in str(err.value) and hint(path) in str(err.value)
    path.write_text('{"id": "a"}\n{"scores": {}}\n')
    with pytest.raises(ArtifactError, match=r"\(line 2: key 'id' missing\)"):
        read_jsonl_artifact(path, ("id",))
    path.write_text('{"id": "a"}\n[1]\n')
    with pytest.raises(ArtifactError, match=r"\(line 2: not a JSON object\)"):
        read_jsonl_artifact(path)
