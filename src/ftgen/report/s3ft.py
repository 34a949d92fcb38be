"""S3FT report step: the S3FT study's table and plot. Base vs SFT vs S3FT in-domain, the change on
every generalization benchmark (the paper's headline: the average drop vs base), and where S3FT's
targets came from.

Built from the transfer table (scores, deltas, bootstrap SEs, 95 % paired-bootstrap CIs and
floored p per eval cell; groups of examples resampled together where the eval set has them) and
the S3FT dataset cards (self / paraphrase / gold counts). p-values are Holm / BH adjusted again
over this table's rows, the family this report tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import read_json_artifact
from ..stats import adjust_within, stratified_cluster_means
from ..step import Input, Inputs, Json, Output
from ..study import BASE, FineTune
from .tables import (
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
from .transfer import load_predictions, read_scores


def s3ft_table(transfer: pl.DataFrame, cards: list[dict], spec: dict) -> pl.DataFrame:
    """The transfer table's primary-metric rows of the S3FT fine-tunes, in-domain and on the general
    benchmarks, p adjusted over these rows, with where each fine-tune's targets came from."""
    general = spec["general"]
    rows = []
    view = transfer.filter(pl.col("primary") & pl.col("train_dataset").is_in(spec["train_on"]))
    for key, group in view.group_by("train_dataset", "variant", "train_size", "format", "shots", maintain_order=True):
        train, variant, size, fmt, shots = key
        for row in group.iter_rows(named=True):
            if row["eval_dataset"] == train:
                kind = "in-domain"
            elif row["eval_dataset"] in general:
                kind = "general"
            else:
                continue
            rows.append(
                {
                    "train_dataset": train,
                    "variant": variant,
                    "train_size": size,
                    "format": fmt,
                    "shots": shots,
                    "eval_dataset": row["eval_dataset"],
                    "kind": kind,
                    "metric": row["metric"],
                    "n": row["n"],
                    "n_groups": row.get("n_groups"),
                    "resampling_unit": row.get("resampling_unit"),
                    "base": row["base"],
                    "base_se": row.get("base_se"),
                    "finetuned": row["finetuned"],
                    "finetuned_lo": row["finetuned_lo"],
                    "finetuned_hi": row["finetuned_hi"],
                    "finetuned_se": row.get("finetuned_se"),
                    "delta": row["delta"],
                    "delta_lo": row["delta_lo"],
                    "delta_hi": row["delta_hi"],
                    "delta_se": row.get("delta_se"),
                    "p_value": row["p_value"],
                    "n_boot": row.get("n_boot"),
                }
            )
    # family: every row of this table (in-domain and general, all fine-tunes)
    holm, bh = adjust_within([r["p_value"] for r in rows], ["s3ft"] * len(rows))
    for r, h, f in zip(rows, holm, bh):
        r.update(p_holm=float(h), p_bh=float(f))
    schema = {
        "n_groups": pl.Int64,
        "n_boot": pl.Int64,
        "resampling_unit": pl.String,
        **{c: pl.Float64 for c in ("base_se", "finetuned_se", "delta_se", "p_value", "p_holm", "p_bh")},
    }
    table = pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)
    by_dataset = {c["dataset"]: c for c in cards}
    prov = pl.DataFrame(
        [
            {
                "train_dataset": d,
                "self": c["self"],
                "paraphrase": c["paraphrase"],
                "gold": c["gold"],
                "targets": c["examples"],
            }
            for d, c in by_dataset.items()
        ]
    )
    return table.join(prov, on="train_dataset", how="left").sort(
        "train_dataset", "variant", "train_size", "kind", "eval_dataset"
    )


def _item_scores(path: str, metric: str) -> tuple[dict[str, float], dict[str, str]]:
    """id -> score, and id -> bootstrap group for the rows that name one (older predictions don't)."""
    rows = load_predictions(path, [metric])  # checked: a damaged file names itself and its rebuild command
    groups = {r["id"]: f"group:{r['group']}" for r in rows if r.get("group") is not None}
    return {r["id"]: r["scores"][metric] for r in rows}, groups


CellKey = tuple[str, str, str, int, int]  # model, model tag, dataset, format, shots


def predictions_by_cell(predictions: list[str]) -> dict[CellKey, str]:
    """Each predictions.jsonl by the eval cell it belongs to, as the scores.json next to it records."""
    found: dict[CellKey, str] = {}
    for path in predictions:
        cell = read_scores(Path(path).with_name("scores.json"))["cell"]
        key = (cell.get("model") or "", cell["model_tag"], cell["dataset"], int(cell["format"]), int(cell["shots"]))
        if key in found:
            raise ValueError(f"{found[key]} and {path} are both the predictions of {key}: one is a stray copy")
        found[key] = str(path)
    return found


def _cell_predictions(found: dict[CellKey, str], key: CellKey) -> str:
    """The predictions file of one cell, which the rule must have declared."""
    if key not in found:
        model, tag, dataset, fmt, shots = key
        raise ValueError(
            f"no predictions.jsonl among the inputs for {tag} of {model or 'the model'} on {dataset} "
            f"format {fmt} shots {shots}: the rule must declare every eval cell's predictions"
        )
    return found[key]


def mean_general_delta(transfer: pl.DataFrame, spec: dict, predictions: list[str]) -> pl.DataFrame:
    """The mean over general benchmarks of (fine-tuned - base), with its SE and 95 % CI from a
    stratified paired bootstrap: groups of items (single items where a benchmark has no groups)
    resampled within each benchmark, the same draws for both models. `predictions`: every eval
    cell's predictions.jsonl; those of the rows' cells are found by what their scores.json records."""
    rows = []
    general = transfer.filter(
        pl.col("primary")
        & pl.col("eval_dataset").is_in(spec["general"])
        & pl.col("train_dataset").is_in(spec["train_on"])
    )
    found = predictions_by_cell(predictions)
    rng = np.random.default_rng(spec["bootstrap_seed"])
    for key, group in general.group_by(
        "train_dataset", "variant", "train_format", "train_size", "seeds", "format", "shots", maintain_order=True
    ):
        train, variant, tfmt, size, seeds, fmt, shots = key
        diffs, groups = [], []
        for row in group.iter_rows(named=True):
            model, dataset = row.get("model") or "", row["eval_dataset"]
            base_path = _cell_predictions(found, (model, BASE, dataset, fmt, shots))
            base, base_groups = _item_scores(base_path, row["metric"])
            loaded = []
            for s in str(seeds).split(","):
                tag = FineTune(train, variant, tfmt, size, int(s)).id
                path = _cell_predictions(found, (model, tag, dataset, fmt, shots))
                loaded.append(_item_scores(path, row["metric"]))
                if set(loaded[-1][0]) != set(base):
                    raise ValueError(
                        f"{path} and {base_path} scored different examples: one of them is stale; "
                        "rebuild it with `snakemake <that file> --force`"
                    )
            per_seed = [scores for scores, _ in loaded]
            labels = {k: v for _, g in reversed(loaded) for k, v in g.items()} | base_groups
            ids = sorted(base)
            diffs.append(np.array([np.mean([ft[i] for ft in per_seed]) - base[i] for i in ids]))
            groups.append([labels.get(i, f"id:{i}") for i in ids])
        point = float(np.mean([d.mean() for d in diffs]))
        boots = stratified_cluster_means(diffs, groups, spec["bootstrap"], rng)
        lo, hi = np.quantile(boots, [0.025, 0.975])
        rows.append(
            {
                "train_dataset": train,
                "variant": variant,
                "train_size": size,
                "mean general Δ": round(point, 2),
                "mean general Δ SE": round(float(boots.std(ddof=1)), 2),
                "mean general Δ CI": interval_text(lo, hi),
            }
        )
    return pl.DataFrame(rows)


def summary(table: pl.DataFrame, mean_delta: pl.DataFrame | None = None) -> pl.DataFrame:
    """One line per fine-tune: in-domain score and delta, the mean delta over the general
    benchmarks, and (S3FT) the provenance of its targets."""
    ind = table.filter(pl.col("kind") == "in-domain")
    indomain = ind.select(
        "train_dataset",
        "variant",
        "train_size",
        pl.col("metric").alias("in_domain_metric"),
        mean_se("base", ci=False),
        mean_se("finetuned").alias("fine-tuned"),
        mean_se("delta").alias("in-domain Δ"),
    ).with_columns(p_column(ind).alias("in-domain p"), p_column(ind, "p_holm", floor=False).alias("in-domain p_holm"))
    general = (
        table.filter(pl.col("kind") == "general")
        .group_by("train_dataset", "variant", "train_size")
        .agg(
            pl.format("{}: {} {}", "eval_dataset", pl.col("delta").round(1), interval("delta"))
            .str.join("; ")
            .alias("general Δ [CI]")
        )
    )
    if mean_delta is not None and mean_delta.height:
        general = mean_delta.join(general, on=["train_dataset", "variant", "train_size"], how="right")
    prov = (
        table.select("train_dataset", "variant", "self", "paraphrase", "gold", "targets")
        .unique(["train_dataset", "variant"])
        .with_columns(
            pl.when(pl.col("variant") == "s3ft")
            .then(pl.format("{} / {} / {}", "self", "paraphrase", "gold"))
            .otherwise(pl.lit(""))
            .alias("self / para / gold")
        )
    )
    return (
        indomain.join(general, on=["train_dataset", "variant", "train_size"], how="left")
        .join(
            prov.select("train_dataset", "variant", "self / para / gold"), on=["train_dataset", "variant"], how="left"
        )
        .sort("train_dataset", "train_size", "variant")
    )


def s3ft_report(
    *, table: Input, cards: Inputs, predictions: Inputs, spec: Json, csv: Output, md: Output, png: Output, pdf: Output
) -> pl.DataFrame:
    """The S3FT table (CSV), its summary per fine-tune (markdown) and plot, from the transfer table
    (`table`), the S3FT dataset cards and every eval cell's predictions (for the mean general delta)."""
    card_records = [read_json_artifact(p, ("dataset", "self", "paraphrase", "gold", "examples")) for p in cards]
    transfer = read_table(table)
    s3ft = s3ft_table(transfer, card_records, spec)
    mean_delta = mean_general_delta(transfer, spec, predictions) if predictions and spec["general"] else None
    write_table(s3ft, csv=csv)
    recorded_b = s3ft["n_boot"].drop_nulls() if "n_boot" in s3ft.columns else None  # the transfer table's B
    n_boot = int(recorded_b[0]) if recorded_b is not None and recorded_b.len() else None
    floor = f'below 1/B shown as "{p_floor(n_boot)}"' if n_boot else "floored at 1/B"
    write_markdown(
        md,
        (
            f"# S3FT vs SFT — study `{spec['study']}`\n\n"
            "Primary metric per task; mean ± SE [95 % bootstrap CI], SE = the SD of the bootstrap replicates; "
            "Δ = fine-tuned − base on the same examples (paired bootstrap). Resampling unit: groups of "
            "examples sharing a context / premise / passage where the eval set has them, else examples; per "
            f"eval dataset: {units_note(s3ft, 'eval_dataset') or 'not recorded (transfer table without it)'}. "
            f"p: two-sided, {floor}. p_holm (and p_bh in the csv): Holm (family-wise error) and "
            "Benjamini-Hochberg (false discovery rate) adjusted p, from the floored p (so conservative); "
            "family = all rows of this table (in-domain and general, every fine-tune). "
            "`mean general Δ`: unweighted mean of the deltas on the general benchmarks "
            f"({', '.join(spec['general'])}), its SE and CI from a paired bootstrap stratified by benchmark "
            "(the same resampling unit within each). S3FT targets: the base model's own accepted answers / its "
            "accepted paraphrases of the gold answer / the gold answer.\n\n"
        )
        + to_markdown(summary(s3ft, mean_delta)),
    )
    plot(s3ft, png, pdf)
    return s3ft


def plot(table: pl.DataFrame, png: str, pdf: str) -> None:
    """Per training set: SFT's and S3FT's in-domain delta (with CI) and mean delta on the general benchmarks."""
    from .plots import save, subplots  # matplotlib: only the plot rules' environment has it

    datasets = sorted(table["train_dataset"].unique().to_list())
    fig, axes = subplots(1, len(datasets), figsize=(4 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        sub = table.filter(pl.col("train_dataset") == dataset)
        variants = [v for v in ("sft", "s3ft") if v in set(sub["variant"])]
        for i, variant in enumerate(variants):
            v = sub.filter(pl.col("variant") == variant)
            ind = v.filter(pl.col("kind") == "in-domain")
            gen = v.filter(pl.col("kind") == "general")
            color = f"C{i}"
            y = ind["delta"].mean() if ind.height else 0.0
            err = [[y - ind["delta_lo"].mean()], [ind["delta_hi"].mean() - y]] if ind.height else None
            ax.bar([i * 0.35], [y], width=0.35, yerr=err, capsize=3, color=color, label=variant.upper())
            # the mean over benchmarks: its CI is in tables/s3ft.md (stratified bootstrap), not drawn
            ax.bar([1 + i * 0.35], [gen["delta"].mean() if gen.height else 0.0], width=0.35, color=color)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks([0.175, 1.175], ["in-domain Δ", "mean general Δ"])
        s3 = sub.filter(pl.col("variant") == "s3ft")
        if s3.height and s3["targets"][0]:
            n = s3["targets"][0]
            ax.set_title(
                f"{dataset}\nS3FT targets: self {s3['self'][0] / n:.0%}, para {s3['paraphrase'][0] / n:.0%}, "
                f"gold {s3['gold'][0] / n:.0%}",
                fontsize=8,
            )
        else:
            ax.set_title(dataset, fontsize=9)
        ax.set_ylabel("Δ vs base (points)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)
