"""Every study plans the same jobs as before the issue-15 redesign (tests/plans/*.json, written
from that code by tests/plans/listing.py): same rules, job counts, output paths, resources, and
params — so finished results stay finished. One deliberate params change is listed below."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

PLANS = Path(__file__).resolve().parents[1] / "plans"
spec = importlib.util.spec_from_file_location("listing", PLANS / "listing.py")
listing = importlib.util.module_from_spec(spec)
spec.loader.exec_module(listing)

# rule -> why its params differ from the stored listing (their jobs rerun once)
PARAMS_CHANGED = {
    "s3ft_report": "the eval folder it globbed is no longer a param: the predictions it reads are declared inputs",
}


@pytest.mark.parametrize("configfile", listing.CONFIGS)
def test_plan_is_unchanged(configfile, monkeypatch):
    for var in ("FTGEN_SLURM_PARTITION", "FTGEN_SLURM_GPU_PARTITION", "FTGEN_SLURM_ACCOUNT", "FTGEN_SLURM_QOS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(listing.REPO)
    stored_file = listing.listing_path(configfile)
    assert stored_file.exists(), f"no stored plan for {configfile}: python tests/plans/listing.py --write {configfile}"
    stored = json.loads(stored_file.read_text())
    planned = listing.digest(listing.planned_jobs(configfile, listing.REPO))
    assert sorted(planned) == sorted(stored), "the set of rules changed"
    for rule, now in planned.items():
        before = stored[rule]
        for key in ("jobs", "outputs", "resources", "params"):
            if key == "params" and rule.endswith(tuple(PARAMS_CHANGED)):  # config/hpc.yaml: <study>_<rule>
                continue
            assert now[key] == before[key], f"{configfile}: rule {rule}: {key} differ (sample now: {now['sample']})"
