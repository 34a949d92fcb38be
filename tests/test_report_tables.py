"""The report tables' formatting and writers (ftgen.report.tables) on hand-written values."""

import math

import polars as pl
import pytest

from ftgen.artifacts import ArtifactError
from ftgen.report.tables import (
    format_p,
    interval,
    interval_text,
    mean_se,
    p_column,
    p_floor,
    read_table,
    to_markdown,
    units_note,
    write_markdown,
    write_table,
)


def test_to_markdown_prints_floats_with_fixed_decimals_and_the_rest_as_is():
    df = pl.DataFrame(
        {"name": ["a1", None], "n": [12, 3], "score": [61.25, 2.0], "ok": [True, False], "p": ["< 0.001", ""]}
    )
    assert to_markdown(df) == (
        "| name | n | score | ok | p |\n"
        "|---|---|---|---|---|\n"
        "| a1 | 12 | 61.25 | True | < 0.001 |\n"
        "| None | 3 | 2.00 | False |  |\n"
    )
    assert to_markdown(df.select("score"), floats=1) == "| score |\n|---|\n| 61.2 |\n| 2.0 |\n"
    assert to_markdown(pl.DataFrame({"x": []}, schema={"x": pl.Int64})) == "| x |\n|---|\n"


def test_format_p_floors_at_one_over_b_and_prints_small_p_with_two_digits():
    assert format_p(0.001, 1000) == "< 0.001"  # at the floor 1/B
    assert format_p(0.0005, 2000) == "< 0.0005"
    assert format_p(0.002, 1000) == "0.002"  # above it: the number
    assert format_p(0.0123, 1000) == "0.012" and format_p(1.0, 1000) == "1.000"
    assert format_p(0.00042) == "0.00042"  # no B (adjusted p): never floored
    assert format_p(0.000123456) == "0.00012"
    assert format_p(None) == "" and format_p(math.nan, 1000) == ""
    assert p_floor(1000) == "< 0.001" and p_floor(300) == "< 0.0033"


def test_p_column_uses_each_rows_bootstrap_floor_unless_adjusted():
    table = pl.DataFrame({"p_value": [0.001, 0.5, None], "p_holm": [0.002, 1.0, None], "n_boot": [1000, 1000, 1000]})
    assert p_column(table).to_list() == ["< 0.001", "0.500", ""]
    assert p_column(table, "p_holm", floor=False).to_list() == ["0.002", "1.000", ""]
    assert p_column(table.with_columns(p_holm=pl.lit(0.001)), "p_holm", floor=False).to_list() == ["0.001"] * 3
    assert p_column(table.drop("n_boot")).to_list() == ["0.001", "0.500", ""]  # a table without B: no floor
    assert p_column(table).name == "p_value" and p_column(table).dtype == pl.String


def test_intervals_and_mean_se_text():
    table = pl.DataFrame(
        {
            "delta": [12.34, -3.0, 5.0],
            "delta_se": [1.26, None, 0.5],
            "delta_lo": [9.96, -7.04, None],
            "delta_hi": [14.71, 0.01, 6.0],
        }
    )
    assert table.select(interval("delta").alias("ci"))["ci"].to_list() == ["[10.0, 14.7]", "[-7.0, 0.0]", None]
    assert table.select(mean_se("delta"))["delta"].to_list() == [
        "12.3 ± 1.3 [10.0, 14.7]",
        "-3.0 [-7.0, 0.0]",  # no SE (an older table): mean [lo, hi]
        None,
    ]  # no CI: nothing rather than half a CI
    assert table.select(mean_se("delta", 2, ci=False))["delta"].to_list() == ["12.34 ± 1.26", "-3.0", "5.0 ± 0.5"]
    assert interval_text(-62.5, 17.54) == "[-62.5, 17.5]" and interval_text(0.0, 1.0, 2) == "[0.00, 1.00]"


def test_units_note_names_the_resampling_unit_per_dataset():
    table = pl.DataFrame(
        {
            "eval_dataset": ["a1", "a1", "a2", "b1", "b1"],
            "resampling_unit": ["group (n_groups=20)", "group (n_groups=18)", "example", None, "example"],
            "n_groups": [20, 18, 64, None, 6],
        }
    )
    assert units_note(table, "eval_dataset") == "a1: group (n_groups=18-20); a2: example; b1: example"
    assert units_note(table.filter(pl.col("eval_dataset") == "a1").head(1), "eval_dataset") == "a1: group (n_groups=20)"


def test_table_writers_write_whole_files_and_read_back(tmp_path):
    table = pl.DataFrame({"metric": ["accuracy"], "score": [61.25]})
    write_table(table, parquet=str(tmp_path / "t" / "x.parquet"), csv=str(tmp_path / "t" / "x.csv"))
    assert read_table(str(tmp_path / "t" / "x.parquet")).equals(table)
    assert (tmp_path / "t" / "x.csv").read_text() == "metric,score\naccuracy,61.25\n"
    write_table(table, csv=str(tmp_path / "only.csv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only.csv", "t"]
    write_markdown(str(tmp_path / "r.md"), "# Report\n\n" + to_markdown(table))
    assert (tmp_path / "r.md").read_text() == "# Report\n\n| metric | score |\n|---|---|\n| accuracy | 61.25 |\n"


def test_read_table_names_a_damaged_parquet_and_its_rebuild(tmp_path):
    path = tmp_path / "transfer.parquet"
    write_table(pl.DataFrame({"a": list(range(100))}), parquet=str(path))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ArtifactError) as err:
        read_table(str(path))
    assert f"{path} is damaged (not a readable Parquet file" in str(err.value)
    assert f"`snakemake {path} --force`" in str(err.value)
    with pytest.raises(FileNotFoundError):
        read_table(str(tmp_path / "absent.parquet"))
