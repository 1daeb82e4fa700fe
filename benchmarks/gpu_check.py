"""GPU check (a few minutes on one H200): bf16 encode throughput, FAISS GPU exact + IVF at 1M tags,
end-to-end products/s. Skips cleanly (exit 0, nothing written) when no CUDA GPU is visible.

Run whenever a GPU machine is available:
    python benchmarks/gpu_check.py                 # writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --tags 200000   # smaller synthetic catalog

Encoding uses the packaged MiniLM through sentence-transformers on ``cuda`` in fp32 and bf16
(the cosine between the two is reported, so the bf16 speed comes with its accuracy cost). Search
uses ``faiss`` GPU indexes when the installed FAISS has GPU support (``faiss-gpu``); otherwise
the exact search runs as a torch matrix product + ``topk`` on the GPU and IVF is reported as
unavailable. Nothing here is needed by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _sync_time(fn: Callable[[], Any], repeat: int = 3) -> float:
    import torch

    fn()  # warm-up (CUDA kernels, cuBLAS handles)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def product_texts(data: Path | None, n: int) -> tuple[list[Any], list[str], list[Any]]:
    """Products, their encoder texts and the tags, from MWPD (repeated to ``n``) or synthetic titles."""
    from tagindex.io import load_products, load_tags
    from tagindex.schema import Product, Tag
    from tagindex.text import product_text

    if data is not None and (data / "validation.jsonl").exists():
        products = load_products(data / "validation.jsonl")
        tags = load_tags(data / "tags.jsonl")
    else:
        words = [
            "steel",
            "cotton",
            "wireless",
            "kids",
            "organic",
            "leather",
            "garden",
            "usb",
            "blue",
            "large",
        ]
        products = [
            Product(id=str(i), title=" ".join(words[(i + j * 3) % len(words)] for j in range(6)))
            for i in range(1000)
        ]
        tags = [Tag(id=f"t{i}", name=f"{words[i % 10]} {words[(i // 10) % 10]}") for i in range(100)]
    reps = -(-n // len(products))
    products = [p for _ in range(reps) for p in products][:n]
    return products, [product_text(p) for p in products], tags


def encode_check(texts: Sequence[str], batch_size: int) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    from tagindex.encoders import resolve_model_path

    path = resolve_model_path("packaged:all-MiniLM-L6-v2")
    out: dict[str, Any] = {"n_texts": len(texts), "batch_size": batch_size}
    vectors = {}
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = SentenceTransformer(path, device="cuda", local_files_only=True)
        model.max_seq_length = 128
        model.to(dtype)

        def run(model: Any = model) -> np.ndarray:
            emb = model.encode(
                list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True
            )
            return emb.float().cpu().numpy()

        seconds = _sync_time(run, repeat=2)
        vectors[dtype_name] = run()
        out[f"{dtype_name}_products_per_s"] = len(texts) / seconds
        del model
        torch.cuda.empty_cache()
    out["bf16_mean_cosine_to_fp32"] = float((vectors["fp32"] * vectors["bf16"]).sum(axis=1).mean())
    out["bf16_min_cosine_to_fp32"] = float((vectors["fp32"] * vectors["bf16"]).sum(axis=1).min())
    return out


def search_check(n_tags: int, n_queries: int, dim: int, k: int) -> dict[str, Any]:
    import faiss
    import torch

    rng = np.random.default_rng(0)
    base = rng.standard_normal((n_tags, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[rng.choice(n_tags, n_queries, replace=False)] + 0.1 * rng.standard_normal(
        (n_queries, dim), dtype=np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    out: dict[str, Any] = {"n_tags": n_tags, "n_queries": n_queries, "k": k}

    # torch exact search: the reference and a fallback when FAISS has no GPU support.
    xb = torch.from_numpy(base).cuda()
    xq = torch.from_numpy(queries).cuda()

    def torch_exact() -> Any:
        return torch.topk(xq @ xb.T, k, dim=1)

    out["torch_exact_s"] = _sync_time(torch_exact)
    truth = torch_exact().indices.cpu().numpy()
    out["torch_exact_queries_per_s"] = n_queries / out["torch_exact_s"]

    if not (hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0):
        out["faiss_gpu"] = "unavailable (install faiss-gpu-cu12 on a GPU machine)"
        return out
    res = faiss.StandardGpuResources()
    start = time.perf_counter()
    flat = faiss.index_cpu_to_gpu(res, 0, faiss.IndexFlatIP(dim))
    flat.add(base)
    out["faiss_exact_build_s"] = time.perf_counter() - start
    out["faiss_exact_s"] = _sync_time(lambda: flat.search(queries, k))
    out["faiss_exact_queries_per_s"] = n_queries / out["faiss_exact_s"]
    _, found = flat.search(queries, k)
    out["faiss_exact_recall_vs_torch"] = float(
        np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found, strict=True)])
    )

    nlist = 4096
    start = time.perf_counter()
    ivf = faiss.index_cpu_to_gpu(
        res, 0, faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    )
    ivf.train(base)
    ivf.add(base)
    out["faiss_ivf_build_s"] = time.perf_counter() - start
    out["faiss_ivf"] = []
    for nprobe in (8, 32, 128):
        faiss.GpuParameterSpace().set_index_parameter(ivf, "nprobe", nprobe)
        seconds = _sync_time(lambda: ivf.search(queries, k))
        _, found = ivf.search(queries, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found, strict=True)]))
        out["faiss_ivf"].append(
            {
                "nlist": nlist,
                "nprobe": nprobe,
                "queries_per_s": n_queries / seconds,
                f"recall@{k}_vs_exact": recall,
            }
        )
    return out


def end_to_end_check(products: Sequence[Any], tags: Sequence[Any], batch_size: int) -> dict[str, Any]:
    import torch

    from tagindex.config import EncoderParams, TagIndexParams
    from tagindex.index import TagIndex

    params = TagIndexParams(encoder=EncoderParams(device="cuda", batch_size=batch_size))
    index = TagIndex.build(tags, params)
    out: dict[str, Any] = {"n_products": len(products), "n_tags": len(index), "device": "cuda"}
    out["fp32_products_per_s"] = len(products) / _sync_time(lambda: index.tag(products, top_k=10), repeat=2)
    index.encoder.model.to(torch.bfloat16)  # type: ignore[attr-defined]
    try:
        seconds = _sync_time(lambda: index.tag(products, top_k=10), repeat=2)
        out["bf16_products_per_s"] = len(products) / seconds
    except (RuntimeError, TypeError) as exc:  # a sentence-transformers version without bf16 -> numpy
        out["bf16_products_per_s"] = f"failed: {exc}"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="`tagindex convert mwpd` output (optional)")
    ap.add_argument("--texts", type=int, default=30000, help="product texts to encode")
    ap.add_argument("--tags", type=int, default=1_000_000, help="synthetic tags for the search check")
    ap.add_argument("--queries", type=int, default=10000, help="queries for the search check")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        print("gpu_check: skipped (torch is not installed)")
        return 0
    if not torch.cuda.is_available():
        print("gpu_check: skipped (no CUDA GPU visible; nothing written)")
        return 0

    products, texts, tags = product_texts(args.data, args.texts)
    result: dict[str, Any] = {
        "machine": {
            "gpu": torch.cuda.get_device_name(0),
            "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        },
        "data": str(args.data) if args.data else "synthetic titles",
    }
    result["encode"] = encode_check(texts, args.batch_size)
    print(json.dumps(result["encode"], indent=2))
    result["search"] = search_check(args.tags, args.queries, 384, 10)
    print(json.dumps(result["search"], indent=2))
    result["end_to_end"] = end_to_end_check(products[:10000], tags, args.batch_size)
    print(json.dumps(result["end_to_end"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
