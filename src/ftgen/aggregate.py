"""Aggregate rule: every eval cell -> the transfer table (fine-tuned vs base, per metric).

One row per (fine-tune, eval dataset, prompt format, shots, metric) with the base score, the
fine-tuned score, the delta and the relation: in-domain (trained on this dataset), cross-domain
(same task, other dataset) or cross-task.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .artifacts import atomic_file, manifest, read_json, write_json
from .config import FineTune

KEYS = ["eval_dataset", "format", "shots"]


def relation(train_dataset: str, train_task: str, eval_dataset: str, eval_task: str) -> str:
    if train_dataset == eval_dataset:
        return "in-domain"
    return "cross-domain" if train_task == eval_task else "cross-task"


def load_scores(paths: list[str]) -> pl.DataFrame:
    rows = []
    for path in paths:
        res = read_json(path)
        cell = res["cell"]
        for metric, value in res["scores"].items():
            rows.append({"model_tag": cell["model_tag"], "eval_dataset": cell["dataset"],
                         "format": cell["format"], "shots": cell["shots"], "metric": metric,
                         "score": float(value), "n": res["n"]})
    return pl.DataFrame(rows)


def transfer_table(scores: pl.DataFrame, params: dict) -> pl.DataFrame:
    tasks = {d: v["task"] for d, v in params["datasets"].items()}
    primary = params["primary_metric"]
    base = scores.filter(pl.col("model_tag") == "base").select(*KEYS, "metric", pl.col("score").alias("base"))
    ft = scores.filter(pl.col("model_tag") != "base")
    info = []
    for tag in ft["model_tag"].unique().sort().to_list():
        f = FineTune.parse(tag)
        info.append({"model_tag": tag, "train_dataset": f.dataset, "train_task": tasks[f.dataset],
                     "variant": f.variant, "train_format": f.format, "train_size": f.size, "seed": f.seed})
    ft = ft.join(pl.DataFrame(info), on="model_tag").rename({"score": "finetuned"})
    table = ft.join(base, on=[*KEYS, "metric"], how="left", validate="m:1")
    table = table.with_columns(
        pl.col("eval_dataset").replace_strict(tasks).alias("eval_task"),
        (pl.col("finetuned") - pl.col("base")).alias("delta"),
    )
    table = table.with_columns(
        pl.struct("train_dataset", "train_task", "eval_dataset", "eval_task")
        .map_elements(lambda r: relation(**r), return_dtype=pl.String).alias("relation"),
        (pl.col("metric") == pl.col("eval_task").replace_strict(primary)).alias("primary"),
    )
    cols = ["train_dataset", "train_task", "variant", "train_format", "train_size", "seed", "eval_dataset",
            "eval_task", "relation", "format", "shots", "metric", "primary", "n", "base", "finetuned", "delta",
            "model_tag"]
    return table.select(cols).sort(["train_task", "train_dataset", "eval_task", "eval_dataset", "format", "shots", "metric"])


def to_markdown(df: pl.DataFrame, floats: int = 2) -> str:
    def fmt(v):
        return f"{v:.{floats}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines) + "\n"


def aggregate(score_paths: list[str], params: dict, out_parquet: str, out_csv: str, out_md: str,
              out_manifest: str) -> pl.DataFrame:
    table = transfer_table(load_scores(score_paths), params)
    missing = table.filter(pl.col("base").is_null())
    if missing.height:
        raise ValueError(f"no base score for {missing.select(KEYS).unique().to_dicts()}")
    with atomic_file(out_parquet, "wb") as fh:
        table.write_parquet(fh)
    with atomic_file(out_csv) as fh:
        table.write_csv(fh)
    primary = table.filter("primary").drop("primary", "model_tag")
    with atomic_file(out_md) as fh:
        fh.write(f"# Transfer table — study `{params['study']}` (primary metric per task; all metrics in transfer.csv)\n\n")
        fh.write(to_markdown(primary))
    write_json(out_manifest, manifest("table", params, inputs={Path(p).parent.as_posix(): p for p in score_paths}))
    return table
