"""Exemplar indexes at scale: compressed codes (IVF-PQ, IVF-SQ8) against the exact float32 search.

Measured, on the same data for every configuration:

- **1M real-ish exemplars**: MWPD train offers resampled with perturbed titles (as
  ``benchmarks/scale_ray.py`` resamples them; labels = the source offer's tags), encoded with the
  index's encoder (a ``tokenlearn-static`` MWPD index, 64-d) by Ray actors
  (:func:`tagindex.engines.ray_engine.encode_with_ray`, ``--workers``); products are title-only so
  that the perturbations change the vectors (a shared description would make the resamples of one
  offer near-identical).
- **--synthetic rows built from them** (10M by default): row ``j`` is the 1M set's row
  ``j mod n`` plus Gaussian noise (``--noise`` per dimension, then renormalised), labelled as its
  source; generated chunk by chunk from a seed, never held whole. These rows are NOT encoded
  products: the figures on them measure the codes and the search at that size, not the encoder.
- Queries: MWPD validation offers (``--queries``, title-only), never in the exemplars.

Per configuration: bytes a vector (codes, ids, total with the shared cells/codebooks), train and add
time, search time per query, recall@10 against the exact search (by row, and tie-aware: a returned
row counts when its exact similarity reaches the exact 10th; resampled offers have exact duplicates),
top-1 agreement of the neighbour vote (softmax over the 20 nearest, the scorer's k and temperature),
and at 1M the top-1 agreement of the full :class:`tagindex.exemplars.ExemplarScorer` ranking.

Example (what produced benchmarks/results/exemplar_scale.json and exemplar_scale_10m.json; two
runs, each under ~20 minutes on 2 shared cores; the second reuses the first's encoded vectors)::

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.exemplar_scale --n 1000000 --synthetic 0 \\
        --queries 1000 --workers 2 --work /tmp/exemplar_scale
    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.exemplar_scale --n 1000000 --skip-real \\
        --synthetic 10000000 --queries 500 --work /tmp/exemplar_scale \\
        --out benchmarks/results/exemplar_scale_10m.json

``--encoded-large N`` replaces the noisy copies by N *encoded* resampled offers (the same recipe as
the 1M set, encoded on Ray and streamed to a memmap on disk, read back one chunk at a time; the exact
reference is streamed too, so memory holds one chunk of float32 at a time)::

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.exemplar_scale --n 1000000 --skip-real \
        --synthetic 0 --encoded-large 10000000 --queries 500 --workers 2 --work /tmp/exemplar_scale \
        --out benchmarks/results/exemplar_scale_10m_encoded.json

Timings on a shared machine are distorted: the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.scale_ray import DATA, RESULTS, build_index, perturb, uptime

logger = logging.getLogger("exemplar_scale")
CHUNK = 20_000  # products per Ray encoding task


# ---- data ------------------------------------------------------------------------------------------
def load_offers(work: Path) -> tuple[list[Any], list[Any]]:
    """MWPD train (labelled) and validation offers, converted."""
    from tagindex.convert import convert
    from tagindex.io import load_products

    converted = work / "mwpd-converted"
    if not (converted / "train.jsonl").exists():
        convert("mwpd", DATA, converted)
    return load_products(converted / "train.jsonl"), load_products(converted / "validation.jsonl")


def resampled(offers: list[Any], n: int, seed: int = 0) -> tuple[Iterator[list[Any]], np.ndarray]:
    """``n`` title-only products resampled from ``offers`` with perturbed titles, in chunks; and the
    source offer of each (n,)."""
    from tagindex.schema import Product

    rng = random.Random(seed)
    donors = [o.title for o in offers]
    source = np.array([rng.randrange(len(offers)) for _ in range(n)], dtype=np.int32)

    def chunks() -> Iterator[list[Any]]:
        titles = random.Random(seed + 1)
        for start in range(0, n, CHUNK):
            yield [
                Product(f"e{i}", perturb(offers[int(source[i])].title, titles, donors))
                for i in range(start, min(start + CHUNK, n))
            ]

    return chunks(), source


def encode_exemplars(index_dir: Path, offers: list[Any], n: int, workers: int, work: Path) -> dict[str, Any]:
    """Encodes the ``n`` resampled exemplars on Ray into ``work/vectors-n.f32`` (reused when present)."""
    from tagindex.engines.ray_engine import encode_with_ray

    path, src_path = work / f"vectors-{n}.f32", work / f"sources-{n}.npy"
    marker = work / f"vectors-{n}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    chunks, source = resampled(offers, n)
    np.save(src_path, source)
    dim = 64
    out: np.memmap | None = None
    start = time.perf_counter()
    row = 0
    for vectors in encode_with_ray(index_dir, chunks, num_workers=workers):
        if out is None:
            dim = vectors.shape[1]
            out = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, dim))
        out[row : row + len(vectors)] = vectors
        row += len(vectors)
    seconds = time.perf_counter() - start
    assert out is not None and row == n
    out.flush()
    info = {
        "n": n,
        "dim": dim,
        "workers": workers,
        "encode_s": round(seconds, 1),
        "products_per_s": round(n / seconds, 1),
        "includes": "Ray start, actor index load",
    }
    marker.write_text(json.dumps(info))
    return info


def leaf_labels(offers: list[Any], by_id: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """One most specific label per offer (int, -1 when none) and the label names."""
    from tagindex.exemplars import most_specific

    names: dict[str, int] = {}
    out = np.full(len(offers), -1, dtype=np.int64)
    for i, o in enumerate(offers):
        deepest = most_specific(o.tags, by_id)
        if deepest:
            out[i] = names.setdefault(deepest[0], len(names))
    return out, list(names)


# ---- metrics ----------------------------------------------------------------------------------------
def vote_top1(sims: np.ndarray, rows: np.ndarray, row_label: np.ndarray, temperature: float) -> np.ndarray:
    """The label winning the softmax-weighted vote of each query's neighbours (-1: no neighbour)."""
    with np.errstate(invalid="ignore"):
        w = np.nan_to_num(np.exp((sims - sims[:, :1]) / temperature), nan=0.0)  # (q, k)
    labels = np.where(rows >= 0, row_label[np.maximum(rows, 0)], -1)
    n_labels = int(row_label.max()) + 2
    votes = np.zeros((len(rows), n_labels))
    np.add.at(votes, (np.repeat(np.arange(len(rows)), rows.shape[1]), labels.ravel()), w.ravel())
    votes[:, -1] = 0.0  # label -1 (no label / no neighbour) never wins
    return np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), -1)


def tie_aware_recall(true_sims_of_approx: np.ndarray, exact_sims: np.ndarray, k: int = 10) -> float:
    """Share of the approximate top-k whose exact similarity reaches the exact k-th (1e-6 slack)."""
    kth = exact_sims[:, k - 1 : k]
    return float(np.mean(true_sims_of_approx[:, :k] >= kth - 1e-6))


# ---- 1M: real encoded exemplars --------------------------------------------------------------------
def configs(kinds: list[str], nlist: int, nprobe: int) -> list[Any]:
    from tagindex.compressed_exemplars import CompressedParams

    out = []
    for kind in kinds:
        if kind == "ivf-sq8":
            out.append(CompressedParams(kind="ivf-sq8", nlist=nlist, nprobe=nprobe))
        else:  # ivf-pqM or ivf-opqM
            base = kind.rstrip("0123456789")
            m = int(kind[len(base) :])
            out.append(CompressedParams(kind=base, pq_m=m, nlist=nlist, nprobe=nprobe))
    return out


def run_real(
    index_dir: Path,
    vectors: np.ndarray,
    source: np.ndarray,
    train: list[Any],
    queries: np.ndarray,
    params_list: list[Any],
    k: int,
    nprobes: list[int],
) -> list[dict[str, Any]]:
    from tagindex.compressed_exemplars import CompressedExemplarIndex, ExactNeighbours, recall_at_k
    from tagindex.exemplars import ExemplarScorer, ExemplarSet
    from tagindex.index import TagIndex

    index = TagIndex.load(index_dir)
    ex_params = index.params.exemplars
    by_id = index.by_id
    offer_label, _ = leaf_labels(train, by_id)
    row_label = offer_label[source]
    start = time.perf_counter()
    exact = ExactNeighbours(vectors)
    exact_sims, exact_rows = exact.search(queries, k)
    exact_s = time.perf_counter() - start
    exact_vote = vote_top1(exact_sims, exact_rows, row_label, ex_params.temperature)
    # The full scorer (prototypes + votes) over the 1M exemplars, exact neighbours first.
    exemplars = ExemplarSet([f"e{i}" for i in range(len(vectors))], [train[s].tags for s in source], vectors)
    tags = index.tags
    scorer = ExemplarScorer(tags, index.tag_vectors_matrix, exemplars, ex_params)
    assert len(scorer.ex_ids) == len(vectors), "every exemplar must keep a label for row-aligned search"
    scorer.neighbour_index = exact
    _, exact_top = scorer.top(queries, 1)
    rows_out = [
        {
            "config": "exact float32",
            "bytes_per_vector": {
                "codes": 4.0 * vectors.shape[1],
                "ids": 0.0,
                "total": 4.0 * vectors.shape[1],
            },
            "search_ms_per_query": round(1000 * exact_s / len(queries), 3),
            "recall_at_10": 1.0,
            "recall_at_10_tie_aware": 1.0,
            "vote_top1_agreement": 1.0,
            "scorer_top1_agreement": 1.0,
        }
    ]
    for params in params_list:
        name = f"{params.kind}" + (f" m={params.pq_m}" if params.kind != "ivf-sq8" else "")
        logger.info("1M: %s", name)
        compressed = CompressedExemplarIndex(vectors.shape[1], params)
        sample = vectors[
            np.random.default_rng(params.seed).choice(
                len(vectors), min(params.train_size, len(vectors)), replace=False
            )
        ]
        t0 = time.perf_counter()
        compressed.train(sample, expected=len(vectors))
        t1 = time.perf_counter()
        for start_row in range(0, len(vectors), 100_000):
            compressed.add(vectors[start_row : start_row + 100_000])
        t2 = time.perf_counter()
        for nprobe in nprobes:
            compressed.set_nprobe(nprobe)
            t3 = time.perf_counter()
            sims, rows = compressed.search(queries, k)
            search_s = time.perf_counter() - t3
            # Exact similarity of every returned row (-inf for padding).
            true = np.einsum("qd,qkd->qk", queries, vectors[np.maximum(rows, 0)])
            true = np.where(rows >= 0, true, -np.inf)
            scorer.neighbour_index = compressed
            _, top = scorer.top(queries, 1)
            rows_out.append(
                {
                    "config": f"{name} p={nprobe}",
                    "params": params.to_dict(),
                    "bytes_per_vector": compressed.bytes_per_vector(),
                    "train_s": round(t1 - t0, 1),
                    "add_s": round(t2 - t1, 1),
                    "search_ms_per_query": round(1000 * search_s / len(queries), 3),
                    "recall_at_10": round(recall_at_k(rows[:, :10], exact_rows[:, :10]), 4),
                    "recall_at_10_tie_aware": round(tie_aware_recall(true, exact_sims), 4),
                    "vote_top1_agreement": round(
                        float(np.mean(vote_top1(sims, rows, row_label, ex_params.temperature) == exact_vote)),
                        4,
                    ),
                    "scorer_top1_agreement": round(
                        float(np.mean([a == b for a, b in zip(top, exact_top, strict=True)])), 4
                    ),
                }
            )
            logger.info("%s", rows_out[-1])
    return rows_out


# ---- 10M: noisy copies of the encoded rows -------------------------------------------------------
def synthetic_chunk(base: np.ndarray, c: int, noise: float, seed: int = 7) -> np.ndarray:
    """Chunk ``c`` of the synthetic set: every base row plus seeded noise, renormalised (n, dim)."""
    rng = np.random.default_rng([seed, c])
    out = base + noise * rng.standard_normal(base.shape, dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def run_synthetic(
    base: np.ndarray,
    row_label_base: np.ndarray,
    total: int,
    noise: float,
    queries: np.ndarray,
    params_list: list[Any],
    k: int,
    temperature: float,
    nprobes: list[int],
) -> dict[str, Any]:
    from tagindex.compressed_exemplars import CompressedExemplarIndex, recall_at_k
    from tagindex.vector_index import exact_search

    n = len(base)
    copies = total // n
    indexes = [CompressedExemplarIndex(base.shape[1], p) for p in params_list]
    first = synthetic_chunk(base, 0, noise)
    cos_to_source = float(np.mean(np.sum(first[:10_000] * base[:10_000], axis=1)))
    timings: list[dict[str, float]] = []
    for idx, p in zip(indexes, params_list, strict=True):
        t0 = time.perf_counter()
        picked = np.random.default_rng(p.seed).choice(n, min(p.train_size, n), replace=False)
        idx.train(first[picked], expected=total)
        timings.append({"train_s": time.perf_counter() - t0, "add_s": 0.0})
    best_sims = np.full((len(queries), k), -np.inf, np.float32)
    best_rows = np.full((len(queries), k), -1, np.int64)
    exact_s = generate_s = 0.0
    for c in range(copies):
        t0 = time.perf_counter()
        chunk = first if c == 0 else synthetic_chunk(base, c, noise)
        generate_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        sims, rows = exact_search(queries, chunk, k)
        merged_sims = np.hstack([best_sims, sims])
        merged_rows = np.hstack([best_rows, rows + c * n])
        order = np.argsort(-merged_sims, axis=1, kind="stable")[:, :k]
        best_sims = np.take_along_axis(merged_sims, order, axis=1)
        best_rows = np.take_along_axis(merged_rows, order, axis=1)
        exact_s += time.perf_counter() - t0
        for idx, t in zip(indexes, timings, strict=True):
            t0 = time.perf_counter()
            idx.add(chunk)
            t["add_s"] += time.perf_counter() - t0
        logger.info("synthetic chunk %d/%d added", c + 1, copies)
        del chunk
    row_label = np.tile(row_label_base, copies)
    exact_vote = vote_top1(best_sims, best_rows, row_label, temperature)
    results = []
    for idx, p, t in zip(indexes, params_list, timings, strict=True):
        for nprobe in nprobes:
            idx.set_nprobe(nprobe)
            t0 = time.perf_counter()
            sims, rows = idx.search(queries, k)
            search_s = time.perf_counter() - t0
            # Exact similarities of the returned rows, chunk by chunk (regenerated from the seed).
            true = np.full(rows.shape, -np.inf, np.float32)
            for c in range(copies):
                inside = (rows >= c * n) & (rows < (c + 1) * n)
                if inside.any():
                    chunk = synthetic_chunk(base, c, noise)
                    q_idx, k_idx = np.nonzero(inside)
                    true[q_idx, k_idx] = np.sum(queries[q_idx] * chunk[rows[q_idx, k_idx] - c * n], axis=1)
            name = f"{p.kind}" + (f" m={p.pq_m}" if p.kind != "ivf-sq8" else "")
            results.append(
                {
                    "config": f"{name} p={nprobe}",
                    "params": p.to_dict(),
                    "bytes_per_vector": idx.bytes_per_vector(),
                    "train_s": round(t["train_s"], 1),
                    "add_s": round(t["add_s"], 1),
                    "search_ms_per_query": round(1000 * search_s / len(queries), 3),
                    "recall_at_10": round(recall_at_k(rows[:, :10], best_rows[:, :10]), 4),
                    "recall_at_10_tie_aware": round(tie_aware_recall(true, best_sims), 4),
                    "vote_top1_agreement": round(
                        float(np.mean(vote_top1(sims, rows, row_label, temperature) == exact_vote)), 4
                    ),
                }
            )
            logger.info("%s", results[-1])
    return {
        "rows": total,
        "copies_of_each_encoded_row": copies,
        "noise_per_dim": noise,
        "mean_cos_copy_to_source": round(cos_to_source, 4),
        "exact_search_s": round(exact_s, 1),
        "generate_s": round(generate_s, 1),
        "configs": results,
    }


# ---- 10M: encoded rows, streamed from disk ---------------------------------------------------------
def run_encoded_streamed(
    path: Path,
    n: int,
    dim: int,
    row_label: np.ndarray,
    queries: np.ndarray,
    params_list: list[Any],
    k: int,
    temperature: float,
    nprobes: list[int],
    chunk_rows: int = 1_000_000,
) -> dict[str, Any]:
    """The codes against the exact search over ``n`` encoded vectors read from the memmap at ``path``
    chunk by chunk (never all in memory): train on a seeded sample, add chunk by chunk, exact top-k
    merged chunk by chunk; recall and vote agreement as at 1M."""
    from tagindex.compressed_exemplars import CompressedExemplarIndex, recall_at_k
    from tagindex.vector_index import exact_search

    vectors = np.memmap(path, dtype=np.float32, mode="r", shape=(n, dim))
    indexes = [CompressedExemplarIndex(dim, p) for p in params_list]
    timings: list[dict[str, float]] = []
    for idx, p in zip(indexes, params_list, strict=True):
        picked = np.sort(np.random.default_rng(p.seed).choice(n, min(p.train_size, n), replace=False))
        sample = np.asarray(vectors[picked])
        t0 = time.perf_counter()
        idx.train(sample, expected=n)
        timings.append({"train_s": time.perf_counter() - t0, "add_s": 0.0})
    best_sims = np.full((len(queries), k), -np.inf, np.float32)
    best_rows = np.full((len(queries), k), -1, np.int64)
    exact_s = read_s = 0.0
    for start in range(0, n, chunk_rows):
        t0 = time.perf_counter()
        chunk = np.array(vectors[start : start + chunk_rows])
        read_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        sims, rows = exact_search(queries, chunk, k)
        merged_sims = np.hstack([best_sims, sims])
        merged_rows = np.hstack([best_rows, rows + start])
        order = np.argsort(-merged_sims, axis=1, kind="stable")[:, :k]
        best_sims = np.take_along_axis(merged_sims, order, axis=1)
        best_rows = np.take_along_axis(merged_rows, order, axis=1)
        exact_s += time.perf_counter() - t0
        for idx, t in zip(indexes, timings, strict=True):
            t0 = time.perf_counter()
            idx.add(chunk)
            t["add_s"] += time.perf_counter() - t0
        logger.info("encoded rows %d-%d added", start, start + len(chunk))
        del chunk
    exact_vote = vote_top1(best_sims, best_rows, row_label, temperature)
    results = []
    for idx, p, t in zip(indexes, params_list, timings, strict=True):
        for nprobe in nprobes:
            idx.set_nprobe(nprobe)
            t0 = time.perf_counter()
            sims, rows = idx.search(queries, k)
            search_s = time.perf_counter() - t0
            flat = np.maximum(rows, 0).ravel()
            order = np.argsort(flat)
            picked = np.empty((len(flat), dim), np.float32)
            picked[order] = vectors[flat[order]]  # memmap reads in row order
            true = np.einsum("qd,qkd->qk", queries, picked.reshape(*rows.shape, dim))
            true = np.where(rows >= 0, true, -np.inf)
            name = f"{p.kind}" + (f" m={p.pq_m}" if p.kind != "ivf-sq8" else "")
            results.append(
                {
                    "config": f"{name} p={nprobe}",
                    "params": p.to_dict(),
                    "bytes_per_vector": idx.bytes_per_vector(),
                    "train_s": round(t["train_s"], 1),
                    "add_s": round(t["add_s"], 1),
                    "search_ms_per_query": round(1000 * search_s / len(queries), 3),
                    "recall_at_10": round(recall_at_k(rows[:, :10], best_rows[:, :10]), 4),
                    "recall_at_10_tie_aware": round(tie_aware_recall(true, best_sims), 4),
                    "vote_top1_agreement": round(
                        float(np.mean(vote_top1(sims, rows, row_label, temperature) == exact_vote)), 4
                    ),
                }
            )
            logger.info("%s", results[-1])
    return {
        "rows": n,
        "exact_search_s": round(exact_s, 1),
        "exact_ms_per_query": round(1000 * exact_s / len(queries), 1),
        "read_s": round(read_s, 1),
        "configs": results,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=1_000_000, help="resampled exemplars encoded on Ray")
    p.add_argument("--synthetic", type=int, default=10_000_000, help="rows of the noisy-copy set (0: skip)")
    p.add_argument("--noise", type=float, default=0.03, help="per-dimension noise of the synthetic copies")
    p.add_argument("--queries", type=int, default=1000, help="MWPD validation offers used as queries")
    p.add_argument("--workers", type=int, default=2, help="Ray actors encoding the exemplars")
    p.add_argument(
        "--configs",
        default="ivf-sq8,ivf-pq32,ivf-opq32,ivf-pq16,ivf-opq16,ivf-pq8",
        help="compressed configurations",
    )
    p.add_argument("--synthetic-configs", default="ivf-pq16,ivf-pq32")
    p.add_argument(
        "--encoded-large",
        type=int,
        default=0,
        help="also encode this many resampled offers on Ray (streamed to disk) and measure "
        "--synthetic-configs against the exact search streamed over them (0: skip)",
    )
    p.add_argument("--nlist", type=int, default=1024, help="IVF cells at --n")
    p.add_argument("--synthetic-nlist", type=int, default=2048, help="IVF cells at --synthetic")
    p.add_argument("--nprobes", default="32,128", help="cells searched per query, each measured")
    p.add_argument(
        "--skip-real",
        action="store_true",
        help="only the synthetic set (the encoded vectors of an earlier run at --n are reused)",
    )
    p.add_argument("--work", default="/tmp/exemplar_scale")
    p.add_argument("--out", default=str(RESULTS / "exemplar_scale.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"args": vars(args), "uptime_before": uptime(), "cpus": os.cpu_count()}

    def save() -> None:
        report["uptime_after"] = uptime()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    index_dir = build_index(work / "index-tokenlearn-static", "tokenlearn-static")
    train, validation = load_offers(work)
    report["encode"] = encode_exemplars(index_dir, train, args.n, args.workers, work)
    save()
    enc = report["encode"]
    print(f"encoded {enc['n']:,} exemplars on Ray ({enc['workers']} workers): {enc['encode_s']} s, "
          f"{enc['products_per_s']} products/s")  # fmt: skip
    from tagindex.index import TagIndex
    from tagindex.schema import Product

    index = TagIndex.load(index_dir)
    queries = index.encode_products([Product(o.id, o.title) for o in validation[: args.queries]])
    dim = report["encode"]["dim"]
    k = index.params.exemplars.k
    nprobes = [int(x) for x in args.nprobes.split(",")]
    if args.encoded_large:
        big = args.encoded_large
        report["encoded_large_encode"] = encode_exemplars(index_dir, train, big, args.workers, work)
        report["uptime_after_encoding"] = uptime()
        save()
        enc = report["encoded_large_encode"]
        print(f"encoded {enc['n']:,} exemplars on Ray ({enc['workers']} workers): {enc['encode_s']} s, "
              f"{enc['products_per_s']} products/s")  # fmt: skip
        offer_label, _ = leaf_labels(train, index.by_id)
        report["encoded_large"] = run_encoded_streamed(
            work / f"vectors-{big}.f32",
            big,
            dim,
            offer_label[np.load(work / f"sources-{big}.npy")],
            queries,
            configs(args.synthetic_configs.split(","), args.synthetic_nlist, nprobes[0]),
            k,
            index.params.exemplars.temperature,
            nprobes,
        )
        save()
        print_table(f"{big:,} encoded, streamed (measured)", report["encoded_large"]["configs"])
    if args.skip_real and not args.synthetic:
        print(f"load: {report['uptime_before']} -> {report['uptime_after']}")
        return 0
    vectors = np.array(
        np.memmap(work / f"vectors-{args.n}.f32", dtype=np.float32, mode="r", shape=(args.n, dim))
    )
    source = np.load(work / f"sources-{args.n}.npy")
    if not args.skip_real:
        report["real"] = {
            "n": args.n,
            "queries": len(queries),
            "k": k,
            "configs": run_real(
                index_dir,
                vectors,
                source,
                train,
                queries,
                configs(args.configs.split(","), args.nlist, nprobes[0]),
                k,
                nprobes,
            ),
        }
        save()
        print_table(f"{args.n:,} encoded (measured)", report["real"]["configs"])
    if args.synthetic:
        offer_label, _ = leaf_labels(train, index.by_id)
        report["synthetic"] = run_synthetic(
            vectors,
            offer_label[source],
            args.synthetic,
            args.noise,
            queries,
            configs(args.synthetic_configs.split(","), args.synthetic_nlist, nprobes[0]),
            k,
            index.params.exemplars.temperature,
            nprobes,
        )
        save()
        print_table(f"{args.synthetic:,} noisy copies (measured)", report["synthetic"]["configs"])
    print(f"load: {report['uptime_before']} -> {report['uptime_after']}")
    return 0


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        f"{'config':<22}{'B/vec':>8}{'train s':>9}{'add s':>8}{'ms/q':>8}{'R@10':>7}{'R@10 ties':>10}"
        f"{'vote top1':>10}{'scorer top1':>12}"
    )
    for r in rows:
        print(
            f"{r['config']:<22}{r['bytes_per_vector']['total']:>8.1f}{r.get('train_s', '-'):>9}"
            f"{r.get('add_s', '-'):>8}{r['search_ms_per_query']:>8}{r['recall_at_10']:>7}"
            f"{r['recall_at_10_tie_aware']:>10}{r['vote_top1_agreement']:>10}"
            f"{r.get('scorer_top1_agreement', '-'):>12}"
        )


if __name__ == "__main__":
    sys.exit(main())
