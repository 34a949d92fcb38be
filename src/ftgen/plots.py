"""Plot rule: the transfer table -> delta-vs-base heatmap and mean delta per relation (PNG + PDF)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

RELATIONS = ["in-domain", "cross-domain", "cross-task"]


def _save(fig, png: str, pdf: str) -> None:
    for path in (png, pdf):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(f".tmp-{Path(path).name}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=Path(path).suffix[1:])
        tmp.replace(path)
    plt.close(fig)


def primary_view(table: pl.DataFrame, fmt: int, shots: int) -> pl.DataFrame:
    """Primary metric at one (format, shots), averaged over seeds."""
    return (
        table.filter(pl.col("primary") & (pl.col("format") == fmt) & (pl.col("shots") == shots))
        .group_by("train_dataset", "train_task", "variant", "train_size", "eval_dataset", "eval_task", "relation", "metric")
        .agg(pl.col("delta").mean(), pl.col("base").mean(), pl.col("finetuned").mean())
    )


def heatmap(table: pl.DataFrame, fmt: int, shots: int, png: str, pdf: str) -> None:
    view = primary_view(table, fmt, shots).with_columns(
        (pl.col("train_dataset") + " (" + pl.col("variant") + ", n=" + pl.col("train_size").cast(pl.String) + ")").alias("row")
    )
    rows = view.select("train_task", "row").unique().sort("train_task", "row")["row"].to_list()
    cols = view.select("eval_task", "eval_dataset").unique().sort("eval_task", "eval_dataset")
    col_names, col_tasks = cols["eval_dataset"].to_list(), cols["eval_task"].to_list()
    grid = np.full((len(rows), len(col_names)), np.nan)
    for r in view.iter_rows(named=True):
        grid[rows.index(r["row"]), col_names.index(r["eval_dataset"])] = r["delta"]
    lim = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.3 * len(col_names) + 3, 0.6 * len(rows) + 2.2))
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(col_names)):
            if np.isfinite(grid[i, j]):
                dark = abs(grid[i, j]) > 0.6 * lim
                ax.text(j, i, f"{grid[i, j]:+.1f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set_xticks(range(len(col_names)), [f"{c}\n[{t}]" for c, t in zip(col_names, col_tasks)], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for j in range(1, len(col_tasks)):
        if col_tasks[j] != col_tasks[j - 1]:
            ax.axvline(j - 0.5, color="black", lw=1)
    ax.set_xlabel("evaluated on [task]")
    ax.set_ylabel("fine-tuned on")
    ax.set_title(f"Δ vs base (primary metric: accuracy / ROUGE-L), format {fmt}, {shots}-shot")
    fig.colorbar(im, ax=ax, label="fine-tuned − base (points)")
    _save(fig, png, pdf)


def relation_bars(table: pl.DataFrame, fmt: int, shots: int, png: str, pdf: str) -> None:
    """Mean Δ per relation, one group of bars per (training task, variant)."""
    view = primary_view(table, fmt, shots).group_by("train_task", "variant", "relation").agg(pl.col("delta").mean())
    groups = view.select("train_task", "variant").unique().sort("train_task", "variant").rows()
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(groups), 3.5))
    width = 0.8 / len(RELATIONS)
    for k, rel in enumerate(RELATIONS):
        heights = []
        for task, variant in groups:
            v = view.filter((pl.col("train_task") == task) & (pl.col("variant") == variant) & (pl.col("relation") == rel))["delta"]
            heights.append(float(v[0]) if len(v) else np.nan)
        ax.bar(np.arange(len(groups)) + (k - 1) * width, heights, width, label=rel)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(groups)), [f"{t}\n{v}" for t, v in groups], fontsize=8)
    ax.set_xlabel("fine-tuned on task (variant)")
    ax.set_ylabel("mean Δ vs base (points)")
    ax.set_title(f"Mean Δ by relation, format {fmt}, {shots}-shot")
    ax.legend(fontsize=8)
    _save(fig, png, pdf)


def delta_by_domain(table: pl.DataFrame, fmt: int, shots: int, png: str, pdf: str) -> None:
    """Per training task: Δ vs base on each eval dataset, one bar per variant, CI error bars."""
    view = table.filter(pl.col("primary") & (pl.col("format") == fmt) & (pl.col("shots") == shots))
    tasks = sorted(view["train_task"].unique().to_list())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = view.filter(pl.col("train_task") == task)
        evals = sub.select("eval_task", "eval_dataset").unique().sort("eval_task", "eval_dataset")["eval_dataset"].to_list()
        series = sub.select("train_dataset", "variant", "train_size").unique().sort("train_dataset", "variant", "train_size")
        width = 0.8 / max(1, series.height)
        for k, (train, variant, size) in enumerate(series.iter_rows()):
            part = sub.filter((pl.col("train_dataset") == train) & (pl.col("variant") == variant) & (pl.col("train_size") == size))
            by_eval = {r["eval_dataset"]: r for r in part.iter_rows(named=True)}
            x = np.arange(len(evals)) + (k - (series.height - 1) / 2) * width
            mid = np.array([by_eval[e]["delta"] if e in by_eval else np.nan for e in evals])
            lo = np.array([by_eval[e]["delta_lo"] if e in by_eval else np.nan for e in evals])
            hi = np.array([by_eval[e]["delta_hi"] if e in by_eval else np.nan for e in evals])
            ax.bar(x, mid, width, yerr=[mid - lo, hi - mid], capsize=2, label=f"{train} {variant} n={size}")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(evals)), evals, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"fine-tuned on {task}", fontsize=10)
        ax.set_ylabel("Δ vs base (points, 95 % CI)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Δ vs base by evaluation dataset, format {fmt}, {shots}-shot")
    _save(fig, png, pdf)


def make_plots(table_path: str, fmt: int, shots: int, heatmap_files, bars_files, domains_files) -> None:
    table = pl.read_parquet(table_path)
    heatmap(table, fmt, shots, *heatmap_files)
    relation_bars(table, fmt, shots, *bars_files)
    delta_by_domain(table, fmt, shots, *domains_files)
