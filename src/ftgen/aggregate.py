"""Aggregate rule: every eval cell -> the transfer table (fine-tuned vs base, per metric).

One row per (fine-tune without its seed, eval dataset, prompt format, shots, metric) with the
base score, the fine-tuned score (mean over seeds), the delta, 95 % bootstrap CIs of all three
(over test examples, and over seeds when there are several), a paired bootstrap p-value, and the
relation: in-domain (trained on this dataset), cross-domain (same task) or cross-task.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from .artifacts import atomic_file, manifest, read_json, write_json
from .config import FineTune
from .metrics import bleu_from_stats, bleu_stats, macro_f1
from .stats import paired_bootstrap

CORPUS_METRICS = ("bleu", "macro_f1")


def relation(train_dataset: str, train_task: str, eval_dataset: str, eval_task: str) -> str:
    if train_dataset == eval_dataset:
        return "in-domain"
    return "cross-domain" if train_task == eval_task else "cross-task"


def load_cell(scores_path: str) -> dict:
    """scores.json + the predictions.jsonl next to it, rows sorted by example id."""
    res = read_json(scores_path)
    with open(Path(scores_path).with_name("predictions.jsonl"), encoding="utf-8") as fh:
        res["rows"] = sorted((json.loads(line) for line in fh), key=lambda r: r["id"])
    return res


def _corpus_fn(metric: str, rows: list[dict], labels: list[str]):
    """idx -> corpus metric on those rows (0-100), for the bootstrap."""
    if metric == "bleu":
        stats = bleu_stats([r["prediction"] for r in rows], [r["references"] for r in rows])
        return lambda idx: bleu_from_stats(stats[idx])
    preds = np.array([r["prediction"] for r in rows])
    gold = np.array([r["references"][0] for r in rows])
    return lambda idx: 100 * macro_f1(list(preds[idx]), list(gold[idx]), labels)


def compare(ft_cells: list[dict], base: dict, metric: str, labels: list[str], n_boot: int, seed: int):
    ids = [r["id"] for r in base["rows"]]
    for cell in ft_cells:
        if [r["id"] for r in cell["rows"]] != ids:
            raise ValueError(f"{cell['cell']} and the base cell scored different examples")
    if metric in CORPUS_METRICS:
        ft_fns = [_corpus_fn(metric, c["rows"], labels) for c in ft_cells]
        corpus = (lambda s, idx: ft_fns[s](idx), _corpus_fn(metric, base["rows"], labels))
        zeros = np.zeros((len(ft_cells), len(ids)))
        return paired_bootstrap(zeros, zeros[0], n_boot=n_boot, seed=seed, corpus=corpus)
    ft = np.array([[r["scores"][metric] for r in c["rows"]] for c in ft_cells])
    b = np.array([r["scores"][metric] for r in base["rows"]])
    return paired_bootstrap(ft, b, n_boot=n_boot, seed=seed)


def transfer_table(cells: list[dict], params: dict) -> pl.DataFrame:
    tasks = {d: v["task"] for d, v in params["datasets"].items()}
    labels = params.get("labels", {})
    primary = params["primary_metric"]
    n_boot, seed = params.get("bootstrap", 1000), params.get("bootstrap_seed", 0)
    base, groups = {}, defaultdict(list)
    for res in cells:
        c = res["cell"]
        key = (c["dataset"], c["format"], c["shots"])
        if c["model_tag"] == "base":
            base[key] = res
        else:
            ft = FineTune.parse(c["model_tag"])
            groups[(ft.dataset, ft.variant, ft.format, ft.size) + key].append((ft.seed, res))
    rows = []
    for (train, variant, tfmt, size, eval_ds, fmt, shots), seeded in sorted(groups.items()):
        if (eval_ds, fmt, shots) not in base:
            raise ValueError(f"no base score for {eval_ds} format {fmt} shots {shots}")
        seeded.sort(key=lambda t: t[0])
        ft_cells = [res for _, res in seeded]
        b = base[(eval_ds, fmt, shots)]
        for metric in b["scores"]:
            est = compare(ft_cells, b, metric, labels.get(eval_ds) or [], n_boot, seed)
            rows.append({
                "train_dataset": train, "train_task": tasks[train], "variant": variant, "train_format": tfmt,
                "train_size": size, "seeds": ",".join(str(s) for s, _ in seeded), "eval_dataset": eval_ds,
                "eval_task": tasks[eval_ds], "relation": relation(train, tasks[train], eval_ds, tasks[eval_ds]),
                "format": fmt, "shots": shots, "metric": metric, "primary": metric == primary[tasks[eval_ds]],
                "n": len(b["rows"]),
                "base": est.base.mean, "base_lo": est.base.lo, "base_hi": est.base.hi,
                "finetuned": est.finetuned.mean, "finetuned_lo": est.finetuned.lo, "finetuned_hi": est.finetuned.hi,
                "delta": est.delta.mean, "delta_lo": est.delta.lo, "delta_hi": est.delta.hi,
                "p_value": est.p_value,
            })
    return pl.DataFrame(rows).sort(["train_task", "train_dataset", "variant", "train_size", "eval_task",
                                    "eval_dataset", "format", "shots", "metric"])


def to_markdown(df: pl.DataFrame, floats: int = 2) -> str:
    def fmt(v):
        return f"{v:.{floats}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines) + "\n"


def markdown_view(table: pl.DataFrame) -> pl.DataFrame:
    """Primary metric only; every score as `mean [lo, hi]`."""
    def ci(col: str) -> pl.Expr:
        return pl.format("{} [{}, {}]", *(pl.col(c).round(1) for c in (col, f"{col}_lo", f"{col}_hi"))).alias(col)

    return table.filter("primary").select(
        "train_dataset", "variant", "train_size", "seeds", "eval_dataset", "relation", "format", "shots", "metric",
        "n", ci("base"), ci("finetuned"), ci("delta"), pl.col("p_value").round(3),
    )


def aggregate(score_paths: list[str], params: dict, out_parquet: str, out_csv: str, out_md: str,
              out_manifest: str) -> pl.DataFrame:
    table = transfer_table([load_cell(p) for p in score_paths], params)
    with atomic_file(out_parquet, "wb") as fh:
        table.write_parquet(fh)
    with atomic_file(out_csv) as fh:
        table.write_csv(fh)
    with atomic_file(out_md) as fh:
        fh.write(f"# Transfer table — study `{params['study']}`\n\n"
                 "Primary metric per task (all metrics in transfer.csv); mean [95 % bootstrap CI] over test "
                 "examples (and seeds); p: paired bootstrap, fine-tuned vs base.\n\n")
        fh.write(to_markdown(markdown_view(table)))
    inputs = {Path(p).parent.as_posix(): p for p in score_paths}
    write_json(out_manifest, manifest("table", params, inputs=inputs, seed=params.get("bootstrap_seed", 0)))
    return table
