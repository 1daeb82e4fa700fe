"""Scale sweep: search speed, tagging throughput, approximate recall and memory as the vocabulary grows.

Usage (from the repository root; ``make bench-scale``)::

    python -m benchmarks.scale                       # 1k, 10k real tags; 100k, 1M synthetic
    python -m benchmarks.scale --sizes 1000,10000    # real tags only

Vocabularies:

- 1k and 10k: real Shopify category names and attribute values (``tagindex convert shopify``: 31k
  tags), a seeded sample, encoded by the packaged MiniLM from their tag text (path + description).
- 100k and 1M: synthetic vectors made around the 10k real ones (a random real vector plus Gaussian
  noise of norm ~0.5, re-normalised; cosine ~0.9 to its source) so they keep the real data's cluster
  structure; uniform random vectors would make approximate search look worse than it is.

Queries are real MWPD validation products (the default product text), encoded once; their encoding
time is measured and added to search time for the end-to-end tagging throughput. For each size and
index kind (exact, HNSW, IVF with tagindex's default parameters) the sweep reports build time, batch
search throughput, single-query p50/p99 latency, recall@10 of the approximate index against exact
search (the numpy oracle), and the index's serialized bytes per tag. HNSW is skipped above
``--hnsw-max`` tags (default 100k: building it for 1M takes far longer than the rest of the sweep on 2
cores) and IVF above 100k uses 1,024 lists (``--ivf-nlist-large``) so its k-means stays within minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.harness import git_commit, library_versions, machine_info
from tagindex.config import TagIndexParams, VectorIndexParams
from tagindex.convert import convert
from tagindex.index import TagIndex
from tagindex.io import load_products, load_tags
from tagindex.metrics import format_table
from tagindex.text import tag_text
from tagindex.vector_index import VectorIndex, exact_search

logger = logging.getLogger("benchmarks.scale")
REPO = Path(__file__).resolve().parents[1]


def synthetic(base: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.5) -> np.ndarray:
    """``n`` unit vectors near random rows of ``base`` (n, dim), generated in chunks to bound memory."""
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        end = min(n, start + 100_000)
        rows = base[rng.integers(0, len(base), end - start)]
        chunk = rows + rng.standard_normal(rows.shape, dtype=np.float32) * (noise / np.sqrt(base.shape[1]))
        out[start:end] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def _latencies(index: VectorIndex, queries: np.ndarray, k: int) -> list[float]:
    out = []
    for q in queries:
        start = time.perf_counter()
        index.search(q[None, :], k)
        out.append((time.perf_counter() - start) * 1000)
    return out


def measure_index(
    kind: str, vectors: np.ndarray, queries: np.ndarray, exact_ids: np.ndarray, k: int, nlist: int | None
) -> dict[str, Any]:
    params = VectorIndexParams(kind=kind, ivf_nlist=nlist, use_gpu=False)  # type: ignore[arg-type]
    index = VectorIndex(vectors.shape[1], params)
    start = time.perf_counter()
    index.add(np.arange(len(vectors), dtype=np.int64), vectors)
    build_s = time.perf_counter() - start
    index.search(queries[:2], k)  # warm-up
    start = time.perf_counter()
    _, ids = index.search(queries, k)
    batch_s = time.perf_counter() - start
    latencies = _latencies(index, queries, k)
    # In a process that has run torch, FAISS's OpenMP threads can wait tens of ms to be woken for a
    # one-query search on a busy machine; a single thread shows the search cost itself.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        latencies_1t = _latencies(index, queries, k)
    finally:
        faiss.omp_set_num_threads(threads)
    recall = float(
        np.mean([len(set(a) & set(b)) / k for a, b in zip(ids.tolist(), exact_ids.tolist(), strict=True)])
    )
    size = len(faiss.serialize_index(index._index))
    return {
        "kind": kind,
        "n_tags": len(vectors),
        "nlist": nlist if kind == "ivf" else None,
        "build_s": build_s,
        "queries_per_s": len(queries) / batch_s,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "p50_ms_1thread": float(np.percentile(latencies_1t, 50)),
        "p99_ms_1thread": float(np.percentile(latencies_1t, 99)),
        f"recall@{k}_vs_exact": recall,
        "index_bytes_per_tag": size / len(vectors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="public data root")
    parser.add_argument("--work", default=str(REPO / "work" / "bench"), help="converted data")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results directory")
    parser.add_argument("--sizes", default="1000,10000,100000,1000000", help="vocabulary sizes")
    parser.add_argument("--kinds", default="exact,hnsw,ivf", help="index kinds")
    parser.add_argument("--queries", type=int, default=200, help="MWPD validation products used as queries")
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest vocabulary to build HNSW for")
    parser.add_argument("--ivf-nlist-large", type=int, default=1024, help="IVF lists above 100k tags")
    parser.add_argument("--real-max", type=int, default=10_000, help="largest vocabulary of real tags")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("sentence_transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [s.strip() for s in args.kinds.split(",")]
    k = 10
    data_root, work = Path(args.data), Path(args.work) / "data"
    if not (work / "shopify" / "tags.jsonl").exists():
        convert("shopify", data_root / "shopify-taxonomy", work / "shopify")
    if not (work / "mwpd" / "validation.jsonl").exists():
        convert("mwpd", data_root / "mwpd", work / "mwpd")
    sweep_start = time.perf_counter()

    tags = load_tags(work / "shopify" / "tags.jsonl")
    n_real = min(max([s for s in sizes if s <= args.real_max] or [1000]), len(tags))
    rng_py = random.Random(args.seed)
    picked = rng_py.sample(range(len(tags)), n_real)
    by_id = {t.id: t for t in tags}
    index = TagIndex(TagIndexParams())  # the default encoder and text parameters
    texts = [tag_text(tags[i], by_id, index.params.text) for i in picked]
    index.encoder.encode(texts[:8])  # warm-up: first-call set-up is not throughput
    start = time.perf_counter()
    real = index.encoder.encode(texts)  # (n_real, dim)
    tag_encode_s = time.perf_counter() - start
    logger.info("encoded %d real tag texts in %.1fs", len(real), tag_encode_s)

    products = load_products(work / "mwpd" / "validation.jsonl")
    products = [products[i] for i in sorted(rng_py.sample(range(len(products)), args.queries))]
    start = time.perf_counter()
    queries = index.encode_products(products)  # (n_queries, dim)
    product_encode_s = time.perf_counter() - start
    encode_per_product = product_encode_s / len(products)

    rows: list[dict[str, Any]] = []
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python -m benchmarks.scale", *(argv if argv is not None else sys.argv[1:])]),
        "git": git_commit(REPO),
        "machine": machine_info(),
        "versions": library_versions(),
        "settings": {
            "k": k,
            "queries": len(queries),
            "seed": args.seed,
            "sizes": sizes,
            "hnsw_max": args.hnsw_max,
            "hnsw": {"m": 32, "ef_construction": 200, "ef_search": 128},
            "ivf_nprobe": VectorIndexParams().ivf_nprobe,
        },
        "tag_texts_encoded_per_s": len(real) / tag_encode_s,
        "products_encoded_per_s": 1 / encode_per_product,
        "complete": False,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        # Written after every row, so a sweep cut short still leaves what it measured.
        result["sweep_wall_s"] = time.perf_counter() - sweep_start
        (out / "scale.json").write_text(json.dumps(result, indent=1) + "\n")

    rng = np.random.default_rng(args.seed)
    for size in sizes:
        if size <= len(real) and size <= args.real_max:
            vectors, source = real[:size], "real Shopify tags"
        else:
            vectors, source = synthetic(real, size, rng), "synthetic around real tags"
        _, exact_ids = exact_search(queries, vectors, k)
        for kind in kinds:
            if kind == "hnsw" and size > args.hnsw_max:
                logger.info("skipping HNSW at %d tags (--hnsw-max %d)", size, args.hnsw_max)
                continue
            nlist = args.ivf_nlist_large if kind == "ivf" and size > 100_000 else None
            logger.info("%s index over %d tags ...", kind, size)
            row = measure_index(kind, vectors, queries, exact_ids, k, nlist)
            row["source"] = source
            # End to end: encoding the product (constant) plus its share of the batch search.
            row["tagging_products_per_s"] = 1.0 / (encode_per_product + 1.0 / row["queries_per_s"])
            rows.append(row)
            save()
        del vectors
    result["complete"] = True
    save()
    header, lines = scale_table(result)
    print(format_table(header, lines))
    print(
        f"\ntag texts encoded/s: {result['tag_texts_encoded_per_s']:.0f}; products encoded/s: "
        f"{result['products_encoded_per_s']:.0f}; sweep wall time {result['sweep_wall_s']:.0f}s"
    )
    plot(result, out / "scale.png")
    return 0


def scale_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = [
        "tags",
        "source",
        "index",
        "build s",
        "search q/s",
        "p50 ms",
        "p99 ms",
        "p50 ms 1T",
        "p99 ms 1T",
        "R@10 vs exact",
        "bytes/tag",
        "tag prod/s",
    ]
    lines = [
        [
            r["n_tags"],
            r["source"],
            r["kind"] + (f" ({r['nlist']} lists)" if r.get("nlist") else ""),
            round(r["build_s"], 3),
            round(r["queries_per_s"], 1),
            round(r["p50_ms"], 3),
            round(r["p99_ms"], 3),
            round(r["p50_ms_1thread"], 3),
            round(r["p99_ms_1thread"], 3),
            round(r["recall@10_vs_exact"], 4),
            round(r["index_bytes_per_tag"]),
            round(r["tagging_products_per_s"], 1),
        ]
        for r in result["rows"]
    ]
    return header, lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for kind in sorted({r["kind"] for r in result["rows"]}):
        rows = [r for r in result["rows"] if r["kind"] == kind]
        xs = [r["n_tags"] for r in rows]
        axes[0].plot(xs, [r["p50_ms"] for r in rows], marker="o", label=kind)
        axes[0].plot(
            xs, [r["p50_ms_1thread"] for r in rows], marker="x", linestyle="--", label=f"{kind}, 1 thread"
        )
        axes[1].plot(xs, [r["queries_per_s"] for r in rows], marker="o", label=kind)
        axes[2].plot(xs, [r["recall@10_vs_exact"] for r in rows], marker="o", label=kind)
    for ax, label in zip(
        axes, ["p50 single-query latency (ms)", "batch search queries/s", "recall@10 vs exact"], strict=True
    ):
        ax.set_xscale("log")
        ax.set_xlabel("tags in the index")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
