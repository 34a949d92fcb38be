"""Aggregate step: every eval cell -> the transfer table (fine-tuned vs base, per metric).

One row per (fine-tune without its seed, eval dataset, prompt format, shots, metric) with the
base score, the fine-tuned score (mean over seeds), the delta, 95 % bootstrap CIs and bootstrap
SEs of all three (over test examples, and over seeds when there are several), a paired bootstrap
p-value floored at 1/B with Holm and Benjamini-Hochberg adjusted versions, and the relation:
in-domain (trained on this dataset), cross-domain (same task) or cross-task. Examples that share
a group (predictions' `group`: a context, premise or passage) are resampled together; rows
without one are their own group.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import damaged, read_json_artifact, read_jsonl_artifact, write_json
from ..artifacts import manifest as artifact_manifest
from ..metrics import bleu_from_stats, bleu_stats, macro_f1
from ..stats import adjust_within, paired_bootstrap
from ..step import Inputs, Json, Output
from ..study import BASE, FineTune
from .tables import FAMILY_NOTE, mean_se, p_column, p_floor, to_markdown, units_note, write_markdown, write_table

CORPUS_METRICS = ("bleu", "macro_f1")


def relation(train_dataset: str, train_task: str, eval_dataset: str, eval_task: str) -> str:
    """How far the eval set is from the training set: in-domain, cross-domain (same task) or cross-task."""
    if train_dataset == eval_dataset:
        return "in-domain"
    return "cross-domain" if train_task == eval_task else "cross-task"


PREDICTION_KEYS = ("id", "prediction", "references", "scores")


def load_predictions(
    path: str | Path, metrics: list[str] | tuple[str, ...] = (), required: tuple[str, ...] = ("id", "scores")
) -> list[dict]:
    """An eval cell's predictions.jsonl, checked (the one reader of the transfer, RAG and S3FT
    reports): every line a JSON object with the `required` keys and a `scores` object holding
    each per-example metric in `metrics`, ids unique; rows sorted by id. A damaged file is an
    ArtifactError naming it, its line and the command that rebuilds it."""
    rows = read_jsonl_artifact(path, tuple(dict.fromkeys(("id", "scores", *required))))
    seen: set[str] = set()
    for lineno, row in enumerate(rows, 1):
        if not isinstance(row["scores"], dict):
            raise damaged(path, f"row {lineno} (id {row['id']!r}): 'scores' is not an object")
        if absent := [m for m in metrics if m not in row["scores"]]:
            raise damaged(path, f"row {lineno} (id {row['id']!r}): no score for metric {absent[0]!r}")
        if row["id"] in seen:
            raise damaged(path, f"row {lineno}: id {row['id']!r} appears twice")
        seen.add(row["id"])
    return sorted(rows, key=lambda r: r["id"])


def read_scores(scores_path: str | Path) -> dict:
    """An eval cell's scores.json, checked: its `cell` names the model tag, dataset, format and shots
    and `scores` is an object, else an ArtifactError naming it and how to rebuild it."""
    res = read_json_artifact(scores_path, ("cell", "scores", "n"))
    if not isinstance(res["cell"], dict) or not {"model_tag", "dataset", "format", "shots"} <= set(res["cell"]):
        raise damaged(scores_path, "'cell' does not name model_tag, dataset, format and shots")
    if not isinstance(res["scores"], dict):
        raise damaged(scores_path, "'scores' is not an object")
    return res


def load_cell(scores_path: str) -> dict:
    """scores.json + the predictions.jsonl next to it, rows sorted by example id; both checked
    (they parse, keys present, one prediction per scored example), else an ArtifactError naming
    the broken file and how to rebuild it."""
    res = read_scores(scores_path)
    scores = res["scores"]
    predictions = Path(scores_path).with_name("predictions.jsonl")
    res["rows"] = load_predictions(predictions, [m for m in scores if m not in CORPUS_METRICS], PREDICTION_KEYS)
    if len(res["rows"]) != res["n"]:
        raise damaged(predictions, f"{len(res['rows'])} rows, but {scores_path} scored {res['n']} examples")
    res["path"] = str(scores_path)
    return res


def _corpus_fn(metric: str, rows: list[dict], labels: list[str]):
    """idx -> corpus metric on those rows (0-100), for the bootstrap."""
    if metric == "bleu":
        stats = bleu_stats([r["prediction"] for r in rows], [r["references"] for r in rows])
        return lambda idx: bleu_from_stats(stats[idx])
    preds = np.array([r["prediction"] for r in rows])
    gold = np.array([r["references"][0] for r in rows])
    return lambda idx: 100 * macro_f1(list(preds[idx]), list(gold[idx]), labels)


def example_groups(cells: list[dict]) -> list[str]:
    """The resampling group of each example (rows in id order): its `group` from the first cell
    that has one, else its own id (predictions written before groups existed)."""
    out = []
    for rows in zip(*(c["rows"] for c in cells)):
        group = next((r["group"] for r in rows if r.get("group") is not None), None)
        out.append(f"id:{rows[0]['id']}" if group is None else f"group:{group}")
    return out


def compare(ft_cells: list[dict], base: dict, metric: str, labels: list[str], n_boot: int, seed: int):
    """Paired bootstrap of one metric: the fine-tune's seeds (`ft_cells`) vs the base cell on the same examples."""
    ids = [r["id"] for r in base["rows"]]
    for cell in ft_cells:
        if [r["id"] for r in cell["rows"]] != ids:
            raise ValueError(
                f"{cell.get('path', cell['cell'])} and the base cell {base.get('path', '')} scored "
                "different examples: one of them is stale; rebuild it with `snakemake <its "
                "predictions.jsonl> --force`"
            )
    groups = example_groups([base, *ft_cells])
    if metric in CORPUS_METRICS:
        ft_fns = [_corpus_fn(metric, c["rows"], labels) for c in ft_cells]
        corpus = (lambda s, idx: ft_fns[s](idx), _corpus_fn(metric, base["rows"], labels))
        zeros = np.zeros((len(ft_cells), len(ids)))
        return paired_bootstrap(zeros, zeros[0], n_boot=n_boot, seed=seed, corpus=corpus, groups=groups)
    ft = np.array([[r["scores"][metric] for r in c["rows"]] for c in ft_cells])
    b = np.array([r["scores"][metric] for r in base["rows"]])
    return paired_bootstrap(ft, b, n_boot=n_boot, seed=seed, groups=groups)


def transfer_table(cells: list[dict], spec: dict) -> pl.DataFrame:
    """One row per (model, fine-tune without its seed, eval cell, metric): base vs fine-tuned."""
    tasks = {d: v["task"] for d, v in spec["datasets"].items()}
    labels = spec["labels"]
    primary = spec["primary_metric"]
    n_boot, seed = spec["bootstrap"], spec["bootstrap_seed"]
    base, groups = {}, defaultdict(list)
    for res in cells:
        c = res["cell"]
        # several base models in one study (the RAG study's generators): each is its own baseline,
        # and fine-tunes of different models are never pooled as if they were seeds
        key = (c.get("model") or "", c["dataset"], c["format"], c["shots"])
        if c["model_tag"] == BASE:
            base[key] = res
        else:
            ft = FineTune.parse(c["model_tag"])
            groups[key[:1] + (ft.dataset, ft.variant, ft.format, ft.size) + key[1:]].append((ft.seed, res))
    rows = []
    for (model, train, variant, tfmt, size, eval_ds, fmt, shots), seeded in sorted(groups.items()):
        if (model, eval_ds, fmt, shots) not in base:
            raise ValueError(f"no base score for {model or 'the model'} on {eval_ds} format {fmt} shots {shots}")
        seeded.sort(key=lambda t: t[0])
        ft_cells = [res for _, res in seeded]
        b = base[(model, eval_ds, fmt, shots)]
        for metric in b["scores"]:
            est = compare(ft_cells, b, metric, labels.get(eval_ds) or [], n_boot, seed)
            rows.append(
                {
                    "model": model,
                    "train_dataset": train,
                    "train_task": tasks[train],
                    "variant": variant,
                    "train_format": tfmt,
                    "train_size": size,
                    "seeds": ",".join(str(s) for s, _ in seeded),
                    "eval_dataset": eval_ds,
                    "eval_task": tasks[eval_ds],
                    "relation": relation(train, tasks[train], eval_ds, tasks[eval_ds]),
                    "format": fmt,
                    "shots": shots,
                    "metric": metric,
                    "primary": metric == primary[tasks[eval_ds]],
                    "n": len(b["rows"]),
                    "n_groups": est.n_groups,
                    "resampling_unit": est.resampling_unit,
                    "base": est.base.mean,
                    "base_lo": est.base.lo,
                    "base_hi": est.base.hi,
                    "base_se": est.base.se,
                    "finetuned": est.finetuned.mean,
                    "finetuned_lo": est.finetuned.lo,
                    "finetuned_hi": est.finetuned.hi,
                    "finetuned_se": est.finetuned.se,
                    "delta": est.delta.mean,
                    "delta_lo": est.delta.lo,
                    "delta_hi": est.delta.hi,
                    "delta_se": est.delta.se,
                    "p_value": est.p_value,
                    "n_boot": n_boot,
                }
            )
    # families: every primary-metric row of the table together; each other metric on its own
    holm, bh = adjust_within(
        [r["p_value"] for r in rows], ["primary" if r["primary"] else f"metric:{r['metric']}" for r in rows]
    )
    for r, h, f in zip(rows, holm, bh):
        r.update(p_holm=float(h), p_bh=float(f))
    return pl.DataFrame(rows).sort(
        [
            "model",
            "train_task",
            "train_dataset",
            "variant",
            "train_size",
            "eval_task",
            "eval_dataset",
            "format",
            "shots",
            "metric",
        ]
    )


def markdown_view(table: pl.DataFrame) -> pl.DataFrame:
    """Primary metric only; every score as `mean ± se [lo, hi]`, p as text ('< 0.001' at 1/B)."""
    view = table.filter("primary")
    return view.select(
        "train_dataset",
        "variant",
        "train_size",
        "seeds",
        "eval_dataset",
        "relation",
        "format",
        "shots",
        "metric",
        "n",
        "n_groups",
        mean_se("base"),
        mean_se("finetuned"),
        mean_se("delta"),
    ).with_columns(p_column(view), p_column(view, "p_holm", floor=False), p_column(view, "p_bh", floor=False))


def aggregate(
    *, scores: Inputs, spec: Json, parquet: Output, csv: Output, md: Output, manifest: Output
) -> pl.DataFrame:
    """The transfer table of every eval cell (`scores`: their scores.json files) as Parquet, CSV and
    a markdown view of the primary metric, with the table's manifest."""
    table = transfer_table([load_cell(p) for p in scores], spec)
    write_table(table, parquet=parquet, csv=csv)
    primary = table.filter("primary")
    n_boot = spec["bootstrap"]
    write_markdown(
        md,
        (
            f"# Transfer table — study `{spec['study']}`\n\n"
            "Primary metric per task (all metrics in transfer.csv); mean ± SE [95 % percentile CI] from a "
            f"paired bootstrap with B = {n_boot} replicates over test examples (and seeds); SE = the SD of the "
            "bootstrap replicates. Resampling unit: whole groups of examples that share a context / premise / "
            "passage where the eval set has them (cluster bootstrap), else single examples; per eval dataset: "
            f"{units_note(primary, 'eval_dataset')}. p: paired bootstrap, fine-tuned vs base, two-sided; "
            f'below 1/B it is shown as "{p_floor(n_boot)}". {FAMILY_NOTE}; '
            f"family = all rows of the primary metric in this table ({primary.height} tests; in transfer.csv "
            "each other metric is adjusted as its own family).\n\n"
        )
        + to_markdown(markdown_view(table)),
    )
    inputs = {Path(p).parent.as_posix(): p for p in scores}
    write_json(manifest, artifact_manifest("table", spec, inputs=inputs, seed=spec["bootstrap_seed"]))
    return table
