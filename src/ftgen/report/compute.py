"""tables/compute.md: what each fine-tune and each model's evaluation ran, how fast, and what
fraction of its device's peak that was (MFU, ftgen.compute), from the records the jobs wrote in
their manifests (fine-tunes) and scores.json files (eval cells)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import polars as pl

from ..step import Inputs, Output
from .tables import to_markdown, write_markdown, write_table

COLUMNS = ["job", "model", "jobs", "device", "tokens", "wall_s", "tokens_per_s", "flops_per_token", "tflops", "mfu"]


def _row(job: str, model: str, records: list[dict], walls: list[float]) -> dict:
    """One row over several records of one kind: rates from the summed tokens, time and FLOPs."""
    tokens = [r["tokens_per_s"] * w for r, w in zip(records, walls)]
    flops = sum(t * r["flops_per_token"] for t, r in zip(tokens, records))
    wall = sum(walls)
    # what the jobs' devices could have done in their time (each record's peak: all its devices; a
    # CPU peak is measured per process, so it differs a little from cell to cell)
    possible = (
        sum(r["peak_tflops"] * 1e12 * w for r, w in zip(records, walls))
        if all(r.get("peak_tflops") for r in records)
        else None
    )
    return {
        "job": job,
        "model": model,
        "jobs": len(records),
        "device": "; ".join(sorted({r["device"] for r in records})),
        "tokens": round(sum(tokens)),
        "wall_s": round(wall, 1),
        "tokens_per_s": round(sum(tokens) / wall, 1) if wall else None,
        "flops_per_token": float(f"{flops / sum(tokens):.4g}") if sum(tokens) else None,
        "tflops": float(f"{flops / wall / 1e12:.4g}") if wall else None,
        "mfu": float(f"{flops / possible:.4g}") if possible else None,
    }


def _readable(table: pl.DataFrame) -> pl.DataFrame:
    """The markdown view: rates to 3 significant digits, MFU in percent (the CSV keeps the values)."""

    def fmt(col: str, spec: str) -> pl.Expr:
        return pl.col(col).map_elements(lambda v: format(v, spec), return_dtype=pl.String)

    return table.with_columns(
        fmt("wall_s", ".1f"),
        fmt("tokens_per_s", ",.0f"),
        fmt("flops_per_token", ".3g"),
        fmt("tflops", ".3g"),
        fmt("mfu", ".2%"),
    )


def compute_table(*, finetuned: Inputs, scores: Inputs, md: Output, csv: Output) -> pl.DataFrame:
    """One row per fine-tune, one per evaluated model (its cells summed)."""
    rows, missing = [], 0
    for folder in finetuned:
        man = json.loads((Path(folder) / "manifest.json").read_text())
        if "compute" not in man:
            missing += 1
            continue
        rows.append(_row("finetune", Path(folder).name, [man["compute"]], [man["wall_time_s"]]))
    cells: dict[str, list[dict]] = defaultdict(list)
    for path in scores:
        res = json.loads(Path(path).read_text())
        if "compute" in res and res["compute"].get("tokens_per_s"):
            cells[res["cell"]["model_tag"]].append(res)
        else:  # an API model's cell, or one scored before cells recorded their compute
            missing += 1
    for tag, results in cells.items():
        rows.append(_row("evaluate", tag, [r["compute"] for r in results], [r["wall_time_s"] for r in results]))
    table = pl.DataFrame(rows, schema=COLUMNS, orient="row") if rows else pl.DataFrame(schema=COLUMNS)
    write_table(table, csv=csv)
    write_markdown(
        md,
        "# Compute: throughput and model FLOPs utilization\n\n"
        "Per fine-tune, and per evaluated model over all its eval cells. tokens: training tokens x epochs "
        "(fine-tune; no padding), or tokens scored and generated (evaluate: contexts, options and decoded "
        "positions); wall_s: training loop / cell scoring only (no model loading); flops_per_token: model "
        "FLOPs (fine-tune: 6N full, 4N LoRA, plus attention; evaluate: what the forward passes ran, a prompt "
        "prefix shared by the cell's prompts once, the output head where logits were taken; ftgen.compute) "
        "per token; mfu: achieved FLOP/s over "
        "the devices' peak (GPU: datasheet bf16 dense; CPU: a measured matmul at the job's threads)."
        + (
            f" {missing} jobs without a compute record (API models, or results from before it) are left out."
            if missing
            else ""
        )
        + "\n\n"
        + to_markdown(_readable(table)),
    )
    return table
