"""Formatting and writing the report tables: one place for markdown, `[lo, hi]`, `mean ± se`
and p-value text, so every table of every study prints numbers the same way."""

from __future__ import annotations

import numpy as np
import polars as pl

from ..artifacts import atomic_file, damaged

FAMILY_NOTE = (
    "p_holm / p_bh: Holm (family-wise error) and Benjamini-Hochberg (false discovery rate) adjusted p, "
    "from the floored p (so conservative)"
)


def format_p(p: float | None, n_boot: int | None = None) -> str:
    """'< 1/B' (as a number: B=1000 -> '< 0.001') when p is at the bootstrap's floor, else p."""
    if p is None or np.isnan(p):
        return ""
    if n_boot and p <= 1 / n_boot * (1 + 1e-9):
        return "< " + np.format_float_positional(1 / n_boot, precision=2, fractional=False, trim="-")
    if p >= 0.001:
        return f"{p:.3f}"
    return np.format_float_positional(p, precision=2, fractional=False, trim="-")


def p_floor(n_boot: int) -> str:
    """How a p at the floor 1/B prints ('< 0.001' for B = 1000), for the tables' notes."""
    return f"< {format_p(1 / n_boot, n_boot)[2:]}"


def p_column(table: pl.DataFrame, col: str = "p_value", floor: bool = True) -> pl.Series:
    """p as text: '< 1/B' (as a number) at the bootstrap's floor; adjusted p as plain numbers."""
    boots = table["n_boot"] if floor and "n_boot" in table.columns else [None] * table.height
    return pl.Series(col, [format_p(p, b) for p, b in zip(table[col], boots)], dtype=pl.String)


def interval(col: str, digits: int = 1) -> pl.Expr:
    """`[lo, hi]` text of the columns `{col}_lo` and `{col}_hi`, rounded (null where either is)."""
    return pl.concat_str(
        pl.lit("["), pl.col(f"{col}_lo").round(digits), pl.lit(", "), pl.col(f"{col}_hi").round(digits), pl.lit("]")
    )


def interval_text(lo: float, hi: float, digits: int = 1) -> str:
    """`[lo, hi]` text of one interval computed outside a table."""
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def mean_se(col: str, digits: int = 1, ci: bool = True) -> pl.Expr:
    """`mean ± se [lo, hi]` text (`mean [lo, hi]` where a table has no SE, e.g. an older one)."""
    parts = [pl.col(col).round(digits), pl.lit(" ± "), pl.col(f"{col}_se").round(digits)]
    tail = [pl.lit(" "), interval(col, digits)] if ci else []
    with_se = pl.concat_str(parts + tail)
    without = pl.concat_str(parts[:1] + tail)
    return pl.when(pl.col(f"{col}_se").is_null()).then(without).otherwise(with_se).alias(col)


def units_note(table: pl.DataFrame, by: str) -> str:
    """'a1: group (n_groups=20); a2: example': the bootstrap's resampling unit per value of `by`
    (a range of n_groups where rows drop different items)."""
    kinds = (
        table.drop_nulls("resampling_unit")
        .with_columns(kind=pl.col("resampling_unit").str.extract(r"^(\w+)"))
        .group_by(by, "kind")
        .agg(lo=pl.col("n_groups").min(), hi=pl.col("n_groups").max())
        .sort(by, "kind")
    )
    return "; ".join(
        f"{d}: example" if k == "example" else f"{d}: {k} (n_groups={lo}{'' if lo == hi else f'-{hi}'})"
        for d, k, lo, hi in kinds.iter_rows()
    )


def to_markdown(df: pl.DataFrame, floats: int = 2) -> str:
    """A GitHub markdown table; floats with `floats` decimals, everything else as `str()` prints it."""

    def cell(v):
        return f"{v:.{floats}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines) + "\n"


def write_table(table: pl.DataFrame, *, parquet: str | None = None, csv: str | None = None) -> None:
    """The table as Parquet (what later steps read) and / or CSV (what people read), atomically."""
    if parquet is not None:
        with atomic_file(parquet, "wb") as fh:
            table.write_parquet(fh)
    if csv is not None:
        with atomic_file(csv) as fh:
            table.write_csv(fh)


def write_markdown(path: str, text: str) -> None:
    """A markdown report (its header and tables, already formatted), atomically."""
    with atomic_file(path) as fh:
        fh.write(text)


def read_table(path: str) -> pl.DataFrame:
    """A Parquet table an earlier step wrote; an unreadable one is an ArtifactError naming it and
    how to rebuild it (a missing one stays FileNotFoundError)."""
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise damaged(path, f"not a readable Parquet file: {first}") from None
