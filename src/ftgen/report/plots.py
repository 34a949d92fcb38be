"""Plot rule: the transfer table -> the study's figures (PNG + PDF), and `save`, the one figure
writer of every report. Importing this module needs matplotlib (the plot rules' environment)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from ..step import Input, Int, Outputs, UsageError  # noqa: E402
from . import PLOTS  # noqa: E402

RELATIONS = ["in-domain", "cross-domain", "cross-task"]


def save(fig, png: str, pdf: str) -> None:
    """Write `fig` as PNG and PDF, each atomically (a temp file renamed into place), and close it."""
    for path in (png, pdf):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(f".tmp-{Path(path).name}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=Path(path).suffix[1:])
        tmp.replace(path)
    plt.close(fig)


def subplots(*args, **kwargs):
    """`matplotlib.pyplot.subplots`, for the plots drawn in other report modules (the backend is chosen here)."""
    return plt.subplots(*args, **kwargs)


def primary_view(table: pl.DataFrame, fmt: int, shots: int) -> pl.DataFrame:
    """Primary metric at one (format, shots), averaged over seeds."""
    return (
        table.filter(pl.col("primary") & (pl.col("format") == fmt) & (pl.col("shots") == shots))
        .group_by(
            "train_dataset", "train_task", "variant", "train_size", "eval_dataset", "eval_task", "relation", "metric"
        )
        .agg(pl.col("delta").mean(), pl.col("base").mean(), pl.col("finetuned").mean())
    )


def heatmap(table: pl.DataFrame, fmt: int, shots: int, png: str, pdf: str) -> None:
    view = primary_view(table, fmt, shots).with_columns(
        (
            pl.col("train_dataset") + " (" + pl.col("variant") + ", n=" + pl.col("train_size").cast(pl.String) + ")"
        ).alias("row")
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
                ax.text(
                    j, i, f"{grid[i, j]:+.1f}", ha="center", va="center", fontsize=8, color="white" if dark else "black"
                )
    ax.set_xticks(
        range(len(col_names)),
        [f"{c}\n[{t}]" for c, t in zip(col_names, col_tasks)],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for j in range(1, len(col_tasks)):
        if col_tasks[j] != col_tasks[j - 1]:
            ax.axvline(j - 0.5, color="black", lw=1)
    ax.set_xlabel("evaluated on [task]")
    ax.set_ylabel("fine-tuned on")
    ax.set_title(f"Δ vs base (primary metric: accuracy / ROUGE-L), format {fmt}, {shots}-shot")
    fig.colorbar(im, ax=ax, label="fine-tuned − base (points)")
    save(fig, png, pdf)


def relation_bars(table: pl.DataFrame, fmt: int, shots: int, png: str, pdf: str) -> None:
    """Mean Δ per relation, one group of bars per (training task, variant)."""
    view = primary_view(table, fmt, shots).group_by("train_task", "variant", "relation").agg(pl.col("delta").mean())
    groups = view.select("train_task", "variant").unique().sort("train_task", "variant").rows()
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(groups), 3.5))
    width = 0.8 / len(RELATIONS)
    for k, rel in enumerate(RELATIONS):
        heights = []
        for task, variant in groups:
            v = view.filter(
                (pl.col("train_task") == task) & (pl.col("variant") == variant) & (pl.col("relation") == rel)
            )["delta"]
            heights.append(float(v[0]) if len(v) else np.nan)
        ax.bar(np.arange(len(groups)) + (k - 1) * width, heights, width, label=rel)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(groups)), [f"{t}\n{v}" for t, v in groups], fontsize=8)
    ax.set_xlabel("fine-tuned on task (variant)")
    ax.set_ylabel("mean Δ vs base (points)")
    ax.set_title(f"Mean Δ by relation, format {fmt}, {shots}-shot")
    ax.legend(fontsize=8)
    save(fig, png, pdf)


def delta_by_domain(table: pl.DataFrame, fmt: int, shots: int, png: str, pdf: str) -> None:
    """Per training task: Δ vs base on each eval dataset, one bar per variant, CI error bars."""
    view = table.filter(pl.col("primary") & (pl.col("format") == fmt) & (pl.col("shots") == shots))
    tasks = sorted(view["train_task"].unique().to_list())
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = view.filter(pl.col("train_task") == task)
        evals = (
            sub.select("eval_task", "eval_dataset").unique().sort("eval_task", "eval_dataset")["eval_dataset"].to_list()
        )
        series = (
            sub.select("train_dataset", "variant", "train_size").unique().sort("train_dataset", "variant", "train_size")
        )
        width = 0.8 / max(1, series.height)
        for k, (train, variant, size) in enumerate(series.iter_rows()):
            part = sub.filter(
                (pl.col("train_dataset") == train) & (pl.col("variant") == variant) & (pl.col("train_size") == size)
            )
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
    save(fig, png, pdf)


def _placeholder(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _model_label(r: dict) -> str:
    return f"{r['train_dataset']} {r['variant']} n={r['train_size']}"


def score_vs_shots(table: pl.DataFrame, fmt: int, png: str, pdf: str) -> None:
    """Primary score vs number of shots per eval dataset: base and every fine-tune, 95 % CIs."""
    view = table.filter(pl.col("primary") & (pl.col("format") == fmt))
    datasets = sorted(view["eval_dataset"].unique().to_list())
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        sub = view.filter(pl.col("eval_dataset") == ds).sort("shots")
        base = sub.unique(["shots"], keep="first").sort("shots")
        ax.errorbar(
            base["shots"],
            base["base"],
            yerr=[base["base"] - base["base_lo"], base["base_hi"] - base["base"]],
            color="black",
            marker="o",
            capsize=2,
            label="base",
        )
        for key, part in sub.group_by(["train_dataset", "variant", "train_size"], maintain_order=True):
            part = part.sort("shots")
            ax.errorbar(
                part["shots"],
                part["finetuned"],
                capsize=2,
                marker=".",
                yerr=[part["finetuned"] - part["finetuned_lo"], part["finetuned_hi"] - part["finetuned"]],
                label=_model_label(dict(zip(["train_dataset", "variant", "train_size"], key))),
            )
        ax.set_title(ds, fontsize=9)
        ax.set_xlabel("shots")
        ax.set_xticks(sorted(sub["shots"].unique().to_list()))
    axes[0][0].set_ylabel("primary score (95 % CI)")
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.suptitle(f"Score vs number of demonstrations, format {fmt}")
    save(fig, png, pdf)


def format_sensitivity(table: pl.DataFrame, shots: int, png: str, pdf: str) -> None:
    """Prompt-format sensitivity: primary score under each prompt format, per eval dataset."""
    view = table.filter(pl.col("primary") & (pl.col("shots") == shots))
    formats = sorted(view["format"].unique().to_list())
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * view["eval_dataset"].n_unique()), 3.6))
    if len(formats) < 2:
        _placeholder(ax, f"only prompt format {formats} evaluated in this study\n(add formats: [0, 1] to compare)")
    else:
        datasets = sorted(view["eval_dataset"].unique().to_list())
        fine_tunes = (
            view.select("train_dataset", "variant", "train_size")
            .unique()
            .sort("train_dataset", "variant", "train_size")
            .rows()
        )
        models = [("base", None)] + [(k, k) for k in fine_tunes]
        width = 0.8 / (len(models) * len(formats))
        for m, (_label, key) in enumerate(models):
            for f, fmt in enumerate(formats):
                sub = view.filter(pl.col("format") == fmt)
                if key is not None:
                    sub = sub.filter(
                        (pl.col("train_dataset") == key[0])
                        & (pl.col("variant") == key[1])
                        & (pl.col("train_size") == key[2])
                    )
                col = "base" if key is None else "finetuned"
                first = sub.unique(["eval_dataset"], keep="first")
                vals = {r["eval_dataset"]: r[col] for r in first.iter_rows(named=True)}
                x = np.arange(len(datasets)) + (m * len(formats) + f - (len(models) * len(formats) - 1) / 2) * width
                label = f"{'base' if key is None else ' '.join(map(str, key))} f{fmt}"
                ax.bar(x, [vals.get(d, np.nan) for d in datasets], width, label=label, hatch="//" if f else None)
        ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("primary score")
        ax.legend(fontsize=6, ncol=2)
    ax.set_title(f"Prompt-format sensitivity, {shots}-shot")
    save(fig, png, pdf)


def score_vs_size(table: pl.DataFrame, fmt: int, shots: int, png: str, pdf: str) -> None:
    """In-domain score vs training-set size per training dataset and variant; base as a line."""
    view = table.filter(
        pl.col("primary") & (pl.col("relation") == "in-domain") & (pl.col("format") == fmt) & (pl.col("shots") == shots)
    )
    trains = sorted(view["train_dataset"].unique().to_list())
    fig, axes = plt.subplots(1, max(1, len(trains)), figsize=(3.6 * max(1, len(trains)), 3.2), squeeze=False)
    for ax, train in zip(axes[0], trains):
        sub = view.filter(pl.col("train_dataset") == train)
        ax.axhline(sub["base"][0], color="black", lw=1, ls="--", label="base")
        for (variant,), part in sub.group_by(["variant"], maintain_order=True):
            part = part.sort("train_size")
            ax.errorbar(
                part["train_size"],
                part["finetuned"],
                marker="o",
                capsize=2,
                label=variant,
                yerr=[part["finetuned"] - part["finetuned_lo"], part["finetuned_hi"] - part["finetuned"]],
            )
        ax.set_title(f"{train} (in-domain)", fontsize=9)
        ax.set_xlabel("training examples")
        ax.set_xticks(sorted(sub["train_size"].unique().to_list()))
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("primary score (95 % CI)")
    fig.suptitle(f"Score vs training-set size, format {fmt}, {shots}-shot")
    save(fig, png, pdf)


def plot_files(outputs: list[str]) -> dict[str, tuple[str, str]]:
    """{plot name: (png, pdf)} from output files named `<plot>.png` / `<plot>.pdf` (in any folder)."""
    files = {(Path(f).stem, Path(f).suffix): f for f in outputs}
    names = sorted({stem for stem, _ in files})
    missing = [f"{n}{ext}" for n in names for ext in (".png", ".pdf") if (n, ext) not in files]
    if missing:
        raise UsageError(f"argument --outputs: no file for {missing}")
    if unknown := [n for n in names if n not in PLOTS]:
        raise UsageError(f"argument --outputs: {unknown} name no plot (plots: {', '.join(PLOTS)})")
    return {n: (files[n, ".png"], files[n, ".pdf"]) for n in names}


def make_plots(*, table: Input, outputs: Outputs, format: Int = 0, shots: Int = 0) -> None:
    """Draw every plot named by an `outputs` file's stem, at one prompt format and shot count."""
    files = plot_files(outputs)
    transfer = pl.read_parquet(table)
    draw = {
        "delta_heatmap": lambda png, pdf: heatmap(transfer, format, shots, png, pdf),
        "delta_by_relation": lambda png, pdf: relation_bars(transfer, format, shots, png, pdf),
        "delta_by_domain": lambda png, pdf: delta_by_domain(transfer, format, shots, png, pdf),
        "score_vs_shots": lambda png, pdf: score_vs_shots(transfer, format, png, pdf),
        "format_sensitivity": lambda png, pdf: format_sensitivity(transfer, shots, png, pdf),
        "score_vs_size": lambda png, pdf: score_vs_size(transfer, format, shots, png, pdf),
    }
    for name, (png, pdf) in files.items():
        draw[name](png, pdf)
