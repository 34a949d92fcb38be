"""Every dataset of config/studies/yang2024.yaml read from its hub fixture (tests/fixtures/build/hub)
by the real `prepare_dataset` step, with the study's own source (config, revision, data_dir,
split, columns, label map, drops) and rehearsal-sized splits. Expected counts are taken from the
fixture files themselves, so the checks hold for any rows in the hub's schema."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from ftgen.data import load_hf_split, prepare_dataset
from ftgen.study import Study, load_yaml
from ftgen.study.rehearsal import fixture_source, hub_fixture, shrink_split

REPO = Path(__file__).resolve().parents[1]
STUDY = Study(load_yaml(REPO / "config/studies/yang2024.yaml"), source="yang2024.yaml")
NAMES = sorted(STUDY.datasets)


def _hub_rows(source: dict) -> list[dict]:
    """The raw rows of the fixture split the source reads (pyarrow/csv/json, not `datasets`)."""
    folder = hub_fixture(source["name"])
    if source["name"] == "jhan21/amazon-food-reviews-dataset":
        with open(folder / "Reviews.csv", newline="") as fh:
            return list(csv.DictReader(fh))
    if source["name"] == "gfissore/arxiv-abstracts-2021":
        with gzip.open(folder / "arxiv-abstracts.jsonl.gz", "rt") as fh:
            return [json.loads(line) for line in fh]
    files = sorted(p for p in folder.rglob("*.parquet") if _in_split(p.relative_to(folder), source))
    assert files, f"no parquet file of {source} under {folder}"
    return pl.concat([pl.read_parquet(p) for p in files]).to_dicts()


def _in_split(rel: Path, source: dict) -> bool:
    parts = rel.parts
    if source.get("data_dir") and parts[0] != source["data_dir"]:
        return False
    if source.get("config") and parts[0] != source["config"]:
        return False
    return source["split"] in parts or rel.name.startswith(f"{source['split']}-")


@pytest.mark.parametrize("name", NAMES)
def test_dataset_prepares_from_its_hub_fixture(name, tmp_path):
    spec = STUDY.dataset_params(name)
    written = spec["source"]
    spec = {**spec, "source": fixture_source(written), "split": shrink_split(spec["split"])}
    assert spec["source"]["name"] == str(hub_fixture(written["name"]))
    for key in ("config", "revision", "data_dir", "split"):  # read the way the hub repo would be
        assert spec["source"].get(key) == written.get(key)
    out = {k: str(tmp_path / f"{name}.{k}") for k in ("examples", "card", "manifest")}
    card = prepare_dataset(spec=spec, **out, log=lambda *_: None)

    raw = _hub_rows(written)
    dropped = card["rows_dropped"]
    expect_dropped = {}
    if written.get("drop_labels"):
        junk = {str(v) for v in written["drop_labels"]}
        expect_dropped["drop_labels"] = sum(str(r[written["label"]]) in junk for r in raw)
        assert expect_dropped["drop_labels"] > 0, f"{name}: the fixture has no row to drop"
    if written.get("drop_empty"):
        column = written["columns"]["context"]
        expect_dropped["drop_empty:context"] = sum(not str(r[column]).strip() for r in raw)
        assert expect_dropped["drop_empty:context"] > 0, f"{name}: the fixture has no empty {column}"
    assert dropped == expect_dropped
    assert card["rows_valid"] == len(raw) - sum(expect_dropped.values())

    want = {s: int(spec["split"].get(s, 0)) for s in ("test", "dev", "fewshot", "train")}
    assert card["counts"] == want, f"{name}: {card['counts']} != {want}"
    df = pl.read_parquet(out["examples"])
    assert df.height == sum(want.values())
    assert all(v.strip() for row in df["inputs"].to_list() for v in row.values())
    if spec["task_type"] == "classification":
        labels = set(spec["labels"])
        assert set(df["label"]) <= labels
        # every label of the task is present among the usable rows (mixed through the fixture)
        if written.get("binarize"):
            b = written["binarize"]
            seen = {b["above"] if float(r["label"]) >= b["threshold"] else b["below"] for r in raw}
        else:
            lm = {str(k): v for k, v in written["label_map"].items()}
            seen = {lm[str(r[written["label"]])] for r in raw if str(r[written["label"]]) in lm}
        assert seen == labels, f"{name}: labels {seen} in the fixture, task has {labels}"
    else:
        assert all(refs and refs[0].strip() for refs in df["references"].to_list())
    if written.get("id"):  # ids are the hub's own ids
        hub_ids = {str(r[written["id"]]) for r in raw}
        assert set(df["id"]) <= hub_ids
    if name == "xlsum":  # only the english folder of the export
        assert card["rows_valid"] == len(raw)
        assert all(i.startswith("english-") for i in df["id"])


def test_fixtures_have_enough_usable_rows_and_groups():
    """>= 24 usable rows in >= 16 groups in every split the study reads (room for any sizes the
    rehearsal and the tests ask for)."""
    for name in NAMES:
        src = STUDY.datasets[name]["source"]
        raw = _hub_rows(src)
        junk = {str(v) for v in src.get("drop_labels", [])}
        usable = [r for r in raw if not (src.get("label") and str(r[src["label"]]) in junk)]
        if src.get("drop_empty"):
            usable = [r for r in usable if str(r[src["columns"]["context"]]).strip()]
        key = src.get("group") or src.get("id")
        groups = {str(r[key]) for r in usable} if key else set(range(len(usable)))
        assert len(usable) >= 24 and len(groups) >= 16, f"{name}: {len(usable)} rows, {len(groups)} groups"


def test_xlsum_without_data_dir_merges_languages():
    """The export holds one folder per language: without `data_dir` every language's test rows
    load together, silently (hub-datasets.md), so the study's `data_dir: english` matters."""
    src = fixture_source(STUDY.datasets["xlsum"]["source"])
    english = load_hf_split(src)
    merged = load_hf_split({k: v for k, v in src.items() if k != "data_dir"})
    assert {i.split("-")[0] for i in english["id"]} == {"english"}
    assert {i.split("-")[0] for i in merged["id"]} >= {"english", "french"}
    assert len(merged) > len(english)


def test_hub_types_as_the_study_assumes():
    """Column types the study's sources rely on, as `datasets` loads them from the fixtures."""
    import datasets

    def features(name: str) -> datasets.Features:
        return load_hf_split(fixture_source(STUDY.datasets[name]["source"])).features

    assert features("socialiqa")["label"] == datasets.Value("string")
    assert features("tweetqa")["Answer"].feature == datasets.Value("string")  # a list of strings
    assert features("stsb")["label"] == datasets.Value("float32")
    assert features("sst2")["idx"] == datasets.Value("int32")
    assert features("mnli")["label"].names == ["entailment", "neutral", "contradiction"]
    assert features("rte")["label"].names == ["entailment", "not_entailment"]
    assert features("qqp")["label"].names == ["not_duplicate", "duplicate"]
    assert features("amazon_polarity")["label"].names == ["negative", "positive"]
    assert features("yelp")["label"].names == ["1", "2"]
    assert features("paws")["label"].names == ["0", "1"]
    assert features("amazon_food")["Score"] == datasets.Value("int64")
