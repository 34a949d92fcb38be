"""RAG report step: the RAG study's tables and its score-vs-training-size plot (Barnett & Brannelly 2024's figure).

One row per (generator, domain, training size, metric): the judge's accuracy and completeness
(1-5) and exact match / token F1 (0-100), each mean ± bootstrap SE [95 % CI] over the judged items,
the base model's score in the same RAG pipeline and the paired delta with a p-value (floored at
1/B; Holm and BH adjusted per metric). Questions about the same gold passage (predictions'
`group`) are resampled together: they are not independent. Missing judgements are
counted per row (`missing`) and left out of that row's mean: never imputed. Agreement between
the judge's repeats (mean per-item sd, Krippendorff's alpha), retry counts, recall@k of each
retriever and the judge-vs-reference rank correlation sit next to the scores.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import damaged, read_json_artifact, read_jsonl_artifact, write_json
from ..artifacts import manifest as artifact_manifest
from ..stats import adjust_within, paired_bootstrap
from ..step import Input, Inputs, Json, Output, Texts
from ..study import BASE, FineTune
from .tables import FAMILY_NOTE, mean_se, p_column, p_floor, to_markdown, units_note, write_markdown, write_table
from .transfer import load_predictions

REFERENCE_METRICS = ("exact_match", "token_f1")


# what a row takes from an estimate (score, base comparison, test), in column order
ESTIMATE_FLOATS = (
    "score",
    "score_lo",
    "score_hi",
    "score_se",
    "base",
    "base_se",
    "delta",
    "delta_lo",
    "delta_hi",
    "delta_se",
    "p_value",
)
ESTIMATE_KEYS = ("n", "missing", "n_groups", "resampling_unit", *ESTIMATE_FLOATS, "n_boot")


def load_judged_cell(judge_json: str, criteria: list[str], with_samples: bool) -> dict:
    """judge.json + its folder's judgements.jsonl and predictions.jsonl -> metric -> {id: value},
    and each item's bootstrap group (its gold passage; its own id where predictions have none).

    Every file is checked (parses, keys present, judgements about the predictions' items, every
    item judged on every criterion): a damaged one is an ArtifactError naming it and how to
    rebuild it."""
    summary = read_json_artifact(judge_json, ("cell", "criteria", "counts", "judge"))
    if not isinstance(summary["cell"], dict) or not {"model", "dataset", "model_tag"} <= set(summary["cell"]):
        raise damaged(judge_json, "'cell' does not name model, dataset and model_tag")
    if absent := [c for c in criteria if c not in summary["criteria"]]:
        raise damaged(judge_json, f"no summary for criterion {absent[0]!r}")
    folder = Path(judge_json).parent
    values: dict[str, dict[str, float | None]] = defaultdict(dict)
    groups: dict[str, str] = {}
    predictions = load_predictions(folder / "predictions.jsonl")
    for row in predictions:
        if row.get("group") is not None:
            groups[row["id"]] = f"group:{row['group']}"
        for m in REFERENCE_METRICS:
            values[m][row["id"]] = row["scores"].get(m)
    ids = {row["id"] for row in predictions}
    judgements = folder / "judgements.jsonl"
    judged: dict[str, set] = defaultdict(set)
    required = ("id", "criterion", "score", *(("sample_mean",) if with_samples else ()))
    for lineno, row in enumerate(read_jsonl_artifact(judgements, required), 1):
        c = row["criterion"]
        if row["id"] not in ids:
            raise damaged(
                judgements,
                f"row {lineno}: item {row['id']!r} is not in {folder / 'predictions.jsonl'} "
                "(judged before the predictions were rebuilt)",
            )
        judged[c].add(row["id"])
        values[c][row["id"]] = row["score"]
        if with_samples:
            values[f"{c}_samples"][row["id"]] = row["sample_mean"]
    for c in criteria:
        if judged[c] != ids:
            raise damaged(judgements, f"criterion {c!r}: {len(judged[c])} of the {len(ids)} items judged")
    return {"cell": summary["cell"], "summary": summary, "values": values, "groups": groups}


def _estimate(
    ft: dict[str, float | None],
    base: dict[str, float | None],
    n_boot: int,
    seed: int,
    groups: dict[str, str] | None = None,
) -> dict:
    """One metric of one cell: its score (items it has) and, vs the base, the paired delta and p."""
    groups = groups or {}
    ids = sorted(ft)
    have = [i for i in ids if ft[i] is not None]
    paired = [i for i in have if base.get(i) is not None]
    out = {"n": len(ids), "missing": len(ids) - len(have)}
    if not have:
        return out
    f = np.array([ft[i] for i in have], dtype=float)
    solo = paired_bootstrap(f, f, n_boot=n_boot, seed=seed, groups=[groups.get(i, f"id:{i}") for i in have])
    out.update(
        score=solo.finetuned.mean,
        score_lo=solo.finetuned.lo,
        score_hi=solo.finetuned.hi,
        score_se=solo.finetuned.se,
        resampling_unit=solo.resampling_unit,
        n_groups=solo.n_groups,
        n_boot=n_boot,
    )
    if paired and ft is not base:
        est = paired_bootstrap(
            np.array([ft[i] for i in paired]),
            np.array([base[i] for i in paired]),
            n_boot=n_boot,
            seed=seed,
            groups=[groups.get(i, f"id:{i}") for i in paired],
        )
        out.update(
            n_paired=len(paired),
            base=est.base.mean,
            base_se=est.base.se,
            delta=est.delta.mean,
            delta_lo=est.delta.lo,
            delta_hi=est.delta.hi,
            delta_se=est.delta.se,
            p_value=est.p_value,
            resampling_unit=est.resampling_unit,
            n_groups=est.n_groups,
        )
    return out


def rag_table(cells: list[dict], spec: dict) -> pl.DataFrame:
    """One row per (generator, domain, fine-tune, metric): score, and delta vs that generator's base."""
    n_boot, seed = spec["bootstrap"], spec["bootstrap_seed"]
    base = {(c["cell"]["model"], c["cell"]["dataset"]): c for c in cells if c["cell"]["model_tag"] == BASE}
    rows = []
    for c in cells:
        model, dataset, tag = c["cell"]["model"], c["cell"]["dataset"], c["cell"]["model_tag"]
        b = base.get((model, dataset))
        if b is None:
            raise ValueError(f"no base-model judgements for {model} on {dataset}")
        size = 0 if tag == BASE else FineTune.parse(tag).size
        crit = c["summary"]["criteria"]
        counts = c["summary"]["counts"]
        groups = {**b.get("groups", {}), **c.get("groups", {})}
        for metric, vals in c["values"].items():
            est = _estimate(vals, b["values"][metric], n_boot, seed, groups)
            if tag == BASE and est.get("score") is not None:
                est.update(
                    base=est["score"],
                    base_se=est["score_se"],
                    delta=0.0,
                    delta_lo=0.0,
                    delta_hi=0.0,
                    delta_se=0.0,
                    p_value=1.0,
                )
            name = metric.removesuffix("_samples")
            judged = name in crit
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "corpus": spec["datasets"].get(dataset, dataset),
                    "model_tag": tag,
                    "train_size": size,
                    "metric": metric,
                    "scale": "1-5" if judged else "0-100",
                    **{k: est.get(k) for k in ESTIMATE_KEYS},
                    "sample_sd_mean": crit[name]["sample_sd_mean"] if judged else None,
                    "krippendorff_alpha": crit[name]["krippendorff_alpha"] if judged else None,
                    "transport_retries": counts["transport_retries"] if judged else None,
                    "parse_retries": counts["parse_retries"] if judged else None,
                }
            )
    # family: the fine-tuned rows of one metric (base rows compare the base with itself: no test)
    holm, bh = adjust_within(
        [r["p_value"] for r in rows], [r["metric"] if r["model_tag"] != BASE else None for r in rows]
    )
    for r, h, f in zip(rows, holm, bh):
        r.update(p_holm=None if np.isnan(h) else float(h), p_bh=None if np.isnan(f) else float(f))
    floats = (*ESTIMATE_FLOATS, "p_holm", "p_bh", "sample_sd_mean", "krippendorff_alpha")
    ints = ("n", "missing", "n_groups", "n_boot", "train_size", "transport_retries", "parse_retries")
    schema = {**{k: pl.Float64 for k in floats}, **{k: pl.Int64 for k in ints}, "resampling_unit": pl.String}
    return pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None).sort(
        "model", "dataset", "metric", "train_size", "model_tag"
    )


def correlations(cells: list[dict], criteria: list[str]) -> pl.DataFrame:
    """Spearman rank correlation between the judge's scores and EM / token F1, items pooled over
    every cell of a (model, dataset) and over all of them."""
    rows = []
    for c in cells:
        ids = sorted(c["values"]["token_f1"])
        for i in ids:
            rows.append(
                {
                    "model": c["cell"]["model"],
                    "dataset": c["cell"]["dataset"],
                    **{m: c["values"][m].get(i) for m in [*criteria, *REFERENCE_METRICS]},
                }
            )
    items = pl.DataFrame(rows, infer_schema_length=None)
    out = []
    pools = [("all", "all", items)] + [
        (m, d, g) for (m, d), g in items.group_by("model", "dataset", maintain_order=True)
    ]
    for model, dataset, g in pools:
        for crit in criteria:
            for ref in REFERENCE_METRICS:
                pair = g.select(crit, ref).drop_nulls()
                rho = pair.select(pl.corr(crit, ref, method="spearman")).item() if pair.height > 2 else None
                out.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "judge_metric": crit,
                        "reference_metric": ref,
                        "items": pair.height,
                        "spearman": None if rho is None or np.isnan(rho) else rho,
                    }
                )
    return pl.DataFrame(out, schema_overrides={"spearman": pl.Float64, "items": pl.Int64}, infer_schema_length=None)


def retrieval_table(recall_files: list[str]) -> pl.DataFrame:
    """recall@k of each (corpus, retriever), one row each."""
    rows = [
        {
            k: v
            for k, v in read_json_artifact(p, ("corpus", "retriever", "passages", "questions")).items()
            if k != "manifest"
        }
        for p in recall_files
    ]
    table = pl.DataFrame(rows).sort("corpus", "retriever")
    ks = sorted((c for c in table.columns if c.startswith("recall@")), key=lambda c: int(c.split("@")[1]))
    return table.select("corpus", "retriever", "passages", "questions", *ks)


def markdown_view(table: pl.DataFrame) -> pl.DataFrame:
    """`mean ± se [lo, hi]` per score and delta; p as text ('< 0.001' at 1/B)."""
    return table.select(
        "model",
        "dataset",
        "metric",
        "train_size",
        "n",
        "missing",
        "n_groups",
        mean_se("score", 2),
        mean_se("base", 2, ci=False),
        mean_se("delta", 2),
        pl.col("sample_sd_mean").round(2),
        pl.col("krippendorff_alpha").round(2),
    ).with_columns(p_column(table), p_column(table, "p_holm", floor=False), p_column(table, "p_bh", floor=False))


def rag_report(
    *, judged: Inputs, recall: Inputs, spec: Json, parquet: Output, csv: Output, md: Output, manifest: Output
) -> pl.DataFrame:
    """The RAG table of every judged cell (`judged`: their judge.json files) as Parquet, CSV and a
    markdown report with the judge's robustness, each retriever's recall (`recall`: recall.json
    files) and the judge-vs-reference correlations; with the table's manifest."""
    criteria = spec["criteria"]
    with_samples = spec["score"] == "logprobs" and int(spec["samples"]) > 0
    cells = [load_judged_cell(p, criteria, with_samples) for p in judged]
    table = rag_table(cells, spec)
    corr = correlations(cells, criteria)
    retrieval = retrieval_table(recall)
    write_table(table, parquet=parquet, csv=csv)
    counts = defaultdict(int)
    for c in cells:
        for k in ("requests", "cache_hits", "transport_retries", "parse_retries", "unavailable"):
            counts[k] += c["summary"]["counts"][k]
    judges = sorted({c["summary"]["judge"] for c in cells})
    n_boot = spec["bootstrap"]
    scoring = " (logprob-weighted, G-Eval)" if spec["score"] == "logprobs" else " (mean of sampled judgements)"
    write_markdown(
        md,
        (
            f"# RAG study `{spec['study']}`: judge and reference scores\n\n"
            f"Judge: {', '.join(judges)}; table score = `{spec['score']}`{scoring}. "
            "Judge metrics on 1-5, EM / token F1 on 0-100; mean ± SE [95 % percentile CI] over judged items "
            f"from a bootstrap with B = {n_boot} replicates, SE = the SD of the bootstrap replicates; delta "
            "vs the base model in the same RAG pipeline (paired bootstrap over items both have). Resampling "
            "unit: the questions about one gold passage together (cluster bootstrap) where predictions name "
            f"it, else single items; per domain: {units_note(table, 'dataset')}. p: two-sided, below 1/B "
            f'shown as "{p_floor(n_boot)}". {FAMILY_NOTE}; family = the fine-tuned rows '
            "of one metric in this table (base rows are no test). "
            "`missing` = items without a score (never imputed); `sample_sd_mean` / `krippendorff_alpha`: "
            "agreement between the judge's repeated samples.\n\n"
        )
        + to_markdown(markdown_view(table))
        + "\n## Judge robustness\n\n"
        + to_markdown(pl.DataFrame([dict(counts)]))
        + "\n## Retrieval (recall@k against gold passages, all questions of the corpus)\n\n"
        + to_markdown(retrieval, floats=1)
        + "\n## Judge vs reference metrics (Spearman's rho over items)\n\n"
        + to_markdown(corr.filter(pl.col("dataset") == "all").vstack(corr.filter(pl.col("dataset") != "all"))),
    )
    inputs = {Path(p).parent.as_posix(): p for p in judged + recall}
    write_json(manifest, artifact_manifest("rag-table", spec, inputs=inputs, seed=spec["bootstrap_seed"]))
    return table


def plot_vs_size(*, table: Input, criteria: Texts, png: Output, pdf: Output) -> None:
    """Score vs training-set size per domain, one row per metric, base as a horizontal line."""
    import matplotlib  # only the plot rules' environment has it

    from .plots import save, subplots

    rag = pl.read_parquet(table)
    metrics = [*criteria, "token_f1"]
    datasets = sorted(rag["dataset"].unique().to_list())
    models = sorted(rag["model"].unique().to_list())
    fig, axes = subplots(
        len(metrics), len(datasets), figsize=(3.6 * len(datasets), 2.8 * len(metrics)), squeeze=False, sharex=True
    )
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for r, metric in enumerate(metrics):
        for col, dataset in enumerate(datasets):
            ax = axes[r][col]
            for m, model in enumerate(models):
                sub = rag.filter(
                    (pl.col("metric") == metric) & (pl.col("dataset") == dataset) & (pl.col("model") == model)
                ).sort("train_size")
                base = sub.filter(pl.col("model_tag") == BASE)
                ft = sub.filter((pl.col("model_tag") != BASE) & pl.col("score").is_not_null())
                color = colors[m % len(colors)]
                if base.height and base["score"][0] is not None:
                    ax.axhline(base["score"][0], color=color, ls="--", lw=1, label=f"{model} base")
                    ax.axhspan(base["score_lo"][0], base["score_hi"][0], color=color, alpha=0.1)
                if ft.height:
                    x = ft["train_size"].to_numpy()
                    y = ft["score"].to_numpy()
                    err = np.vstack([y - ft["score_lo"].to_numpy(), ft["score_hi"].to_numpy() - y])
                    ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=color, label=f"{model} fine-tuned")
                    ax.set_xticks(sorted(set(x)))
            if metric in criteria:
                ax.set_ylim(0.8, 5.2)
            ax.set_title(f"{dataset}: {metric}", fontsize=9)
            if r == len(metrics) - 1:
                ax.set_xlabel("fine-tuning QA pairs")
            if col == 0:
                ax.set_ylabel("score (1-5)" if metric in criteria else "token F1 (0-100)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("RAG: judged accuracy / completeness and token F1 vs fine-tuning set size", fontsize=10)
    fig.tight_layout()
    save(fig, png, pdf)
