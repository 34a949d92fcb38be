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
