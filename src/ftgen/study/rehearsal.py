"""Dress rehearsal of a study: the same DAG on CPU, hub data resolved to the fixtures under
tests/fixtures/hub/ and hub models replaced by tiny random models of the same family."""

from __future__ import annotations

from pathlib import Path

# tests/fixtures/hub/<owner>/<name>: a few rows of a hub dataset in the hub repo's own on-disk
# layout (at the revision the study names), loadable by `datasets.load_dataset(<folder>, ...)`
HUB_FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hub"


def hub_fixture(repo_id: str) -> Path:
    """The fixture folder standing in for hub dataset `repo_id` (it may not exist)."""
    return HUB_FIXTURES / repo_id


# adapters whose `name` is a hub dataset id (read by `ftgen.data.load_hf_split`)
HUB_ADAPTERS = ("hf", "mbpp", "qasper")


def fixture_source(source: dict) -> dict:
    """A dataset or corpus `source` with every hub dataset id replaced by its fixture folder;
    config, revision, data_dir, split and columns stay as written, so the fixture is read the
    way the hub repo would be. A missing fixture is an error naming the folder to create."""
    out = dict(source)
    if source.get("adapter") not in HUB_ADAPTERS:
        return out
    for key in ("corpus", "qa"):  # an hf corpus: passages and questions, each its own hub dataset
        if isinstance(source.get(key), dict):
            out[key] = {**source[key], "name": _fixture_path(source[key]["name"])}
    if isinstance(source.get("name"), str):
        out["name"] = _fixture_path(source["name"])
    return out


def _fixture_path(repo_id: str) -> str:
    folder = hub_fixture(repo_id)
    if not folder.is_dir():
        raise FileNotFoundError(f"no fixture for hub dataset {repo_id!r}: create {folder} (tests/fixtures/hub/README.md)")
    return str(folder)
