"""FAISS inner-product search over unit vectors, with exact numpy search as the oracle.

FAISS is imported here only. ``faiss-cpu`` and ``faiss-gpu`` share the module name ``faiss``; a GPU
copy of the index is used for search when that build sees a GPU, never required.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from tagindex.config import VectorIndexParams

logger = logging.getLogger(__name__)


def exact_search(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner-product search by one matrix product (the oracle for FAISS results).

    Returns:
        scores (n_queries, k) and row indices (n_queries, k) into ``vectors``; -1 pads when k > len(vectors).
    """
    n = len(vectors)
    sims = queries @ vectors.T  # (n_queries, n_vectors)
    kk = min(k, n)
    if kk == 0:
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    scores = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    if kk < k:
        idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return scores, idx


# FAISS scalar-quantiser type per vector format; None keeps full float32 vectors.
_SQ_TYPES: dict[str, int | None] = {
    "float32": None,
    "float16": faiss.ScalarQuantizer.QT_fp16,
    "int8": faiss.ScalarQuantizer.QT_8bit,
}


def _widen_sq_range(index: Any) -> None:
    """Widens the int8 per-dimension range by 10% each side: tags added later may fall outside the
    range of the vectors the quantiser was trained on, and values outside it are clipped."""
    index = faiss.downcast_index(index)
    sq = getattr(index, "sq", None) or getattr(getattr(index, "storage", None), "sq", None)
    if sq is None and hasattr(index, "storage"):
        sq = getattr(faiss.downcast_index(index.storage), "sq", None)
    if sq is not None:
        sq.rangestat_arg = 0.1


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VectorIndex:
    """Id-addressed FAISS index over unit vectors (inner product = cosine).

    Supports adding and removing ids without a rebuild. HNSW cannot delete in FAISS, so removed
    ids are filtered at search time and the graph is compacted once a fifth of it is dead.
    """

    def __init__(self, dim: int, params: VectorIndexParams | None = None) -> None:
        self.dim = dim
        self.params = params or VectorIndexParams()
        self._index: Any = None
        self._removed: set[int] = set()
        self._gpu_index: Any = None
        self._flat: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal) - len(self._removed)

    def _new_index(self, vectors: np.ndarray) -> Any:
        p = self.params
        base: Any
        if p.vector_format not in _SQ_TYPES:
            raise ValueError(f"unknown vector format '{p.vector_format}' (float32, float16 or int8)")
        qtype: Any = _SQ_TYPES[p.vector_format]
        ip = faiss.METRIC_INNER_PRODUCT
        if p.kind == "exact":
            if qtype is None:
                base = faiss.IndexFlatIP(self.dim)
            else:
                base = faiss.IndexScalarQuantizer(self.dim, qtype, ip)
        elif p.kind == "hnsw":
            if qtype is None:
                base = faiss.IndexHNSWFlat(self.dim, p.hnsw_m, ip)
            else:
                base = faiss.IndexHNSWSQ(self.dim, qtype, p.hnsw_m, ip)
            base.hnsw.efConstruction = p.hnsw_ef_construction
            base.hnsw.efSearch = p.hnsw_ef_search
        elif p.kind == "ivf":
            n = len(vectors)
            nlist = p.ivf_nlist or max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39 or 1))
            quantizer = faiss.IndexFlatIP(self.dim)
            if qtype is None:
                base = faiss.IndexIVFFlat(quantizer, self.dim, nlist, ip)
            else:
                base = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, qtype, ip)
            base.nprobe = min(p.ivf_nprobe, nlist)
        else:
            raise ValueError(f"unknown index kind '{p.kind}' (exact, hnsw or ivf)")
        if not base.is_trained:
            if len(vectors) == 0:
                raise ValueError(f"a {p.kind}/{p.vector_format} index needs vectors to train on")
            _widen_sq_range(base)
            base.train(vectors)
        return faiss.IndexIDMap2(base)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Adds vectors (n, dim) under int64 ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        if self._index is None:
            self._index = self._new_index(vectors)
        self._removed.difference_update(ids.tolist())
        self._index.add_with_ids(vectors, ids)
        self._gpu_index, self._flat = None, None

    def remove(self, ids: np.ndarray) -> None:
        if self._index is None:
            return
        ids = np.asarray(ids, dtype=np.int64)
        if self.params.kind == "hnsw":
            self._removed.update(ids.tolist())
            if len(self._removed) * 5 > self._index.ntotal:
                self._compact()
        else:
            self._index.remove_ids(ids)
        self._gpu_index, self._flat = None, None

    def _compact(self) -> None:
        id_map = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        keep = np.array([i not in self._removed for i in id_map.tolist()], dtype=bool)
        vectors = self._index.index.reconstruct_n(0, self._index.ntotal)[keep]
        self._index, self._removed = None, set()
        if keep.any():
            self.add(id_map[keep], vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns scores and ids, each (n_queries, k); missing results are id -1, score -inf."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(queries)
        if self._index is None or self.ntotal == 0 or k <= 0:
            return np.full((n, max(k, 0)), -np.inf, np.float32), np.full((n, max(k, 0)), -1, np.int64)
        fetch = min(k + len(self._removed), int(self._index.ntotal))
        flat = self._flat_view()
        if flat is not None:
            scores, ids = self._matmul_search(queries, flat, fetch)
        else:
            scores, ids = self._searcher().search(queries, fetch)
        if self._removed:
            scores, ids = self._drop_removed(scores, ids, k)
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids

    def _flat_view(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Zero-copy (ntotal, dim) view of an exact float32 index's vectors and its id map, or None.

        FAISS's flat search keeps a heap per query and is 1.5-4x slower than one BLAS matrix product
        plus ``argpartition`` on this hardware, so exact float32 search on CPU uses the product.
        """
        p = self.params
        if p.kind != "exact" or p.vector_format != "float32" or self._searcher() is not self._index:
            return None
        if self._flat is None:
            base: Any = faiss.downcast_index(self._index.index)
            n = int(base.ntotal)
            xb = faiss.rev_swig_ptr(base.get_xb(), n * self.dim) if n else np.zeros(0, np.float32)
            self._flat = (
                np.asarray(xb).reshape(n, self.dim),  # (ntotal, dim), a view into FAISS memory
                faiss.vector_to_array(self._index.id_map).astype(np.int64),
            )
        return self._flat

    @staticmethod
    def _matmul_search(
        queries: np.ndarray, flat: tuple[np.ndarray, np.ndarray], k: int, max_scores: int = 64 << 20
    ) -> tuple[np.ndarray, np.ndarray]:
        vectors, id_map = flat
        # Blocks of queries keep the (block, ntotal) score matrix at ``max_scores`` floats (256 MB).
        block = max(1, max_scores // max(len(vectors), 1))
        if len(queries) <= block:
            scores, rows = exact_search(queries, vectors, k)
        else:
            parts = [exact_search(queries[i : i + block], vectors, k) for i in range(0, len(queries), block)]
            scores = np.concatenate([s for s, _ in parts])
            rows = np.concatenate([r for _, r in parts])
        return scores, np.where(rows >= 0, id_map[np.maximum(rows, 0)], -1)

    def _drop_removed(self, scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        removed = np.fromiter(self._removed, dtype=np.int64)
        dead = np.isin(ids, removed)
        out_ids = np.full((len(ids), k), -1, np.int64)
        out_scores = np.full((len(ids), k), -np.inf, np.float32)
        for row in range(len(ids)):
            live = ~dead[row]
            kept_ids, kept_scores = ids[row][live][:k], scores[row][live][:k]
            out_ids[row, : len(kept_ids)] = kept_ids
            out_scores[row, : len(kept_scores)] = kept_scores
        return out_scores, out_ids

    def _searcher(self) -> Any:
        use_gpu = self.params.use_gpu if self.params.use_gpu is not None else gpu_available()
        if not use_gpu or self.params.kind == "hnsw":  # FAISS has no GPU HNSW
            return self._index
        if self._gpu_index is None:
            self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
        return self._gpu_index

    def save(self, path: str | Path) -> None:
        if self._removed:
            self._compact()
        if self._index is None:
            try:
                self._index = self._new_index(np.zeros((0, self.dim), np.float32))
            except ValueError:  # IVF and int8 need training vectors: an empty index is saved as no file
                self._index = None
        if self._index is not None:
            faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str | Path, dim: int, params: VectorIndexParams) -> VectorIndex:
        index = cls(dim, params)
        if Path(path).exists():
            index._index = faiss.read_index(str(path))
            if index._index.d != dim:
                raise ValueError(f"{path}: FAISS index has dimension {index._index.d}, manifest says {dim}")
            if params.kind == "hnsw":
                hnsw: Any = faiss.downcast_index(index._index.index)
                hnsw.hnsw.efSearch = params.hnsw_ef_search
        return index
