"""Nearest-exemplar search over compressed codes, for exemplar sets too large to hold as float32.

At 10M labelled products a float32 exemplar matrix is 4 x dim bytes a product (2.5 GB for a 64-d
static encoder, 15 GB for 384-d MiniLM) and the exact neighbour search of
:meth:`tagindex.exemplars.ExemplarScorer.neighbours` reads all of it per query. Here exemplars are
stored as FAISS IVF codes instead:

- ``ivf-pq``: product quantisation, ``pq_m`` bytes a vector (``pq_m`` sub-vectors of 8 bits each);
- ``ivf-opq``: the same codes after a learned rotation (OPQ) that spreads the variance evenly over
  the sub-vectors (a ``dim x dim`` matrix shared by all vectors);
- ``ivf-sq8``: one byte a dimension (int8 scalar quantisation, the per-dimension range of the
  training sample widened by 10%);

plus 8 bytes a vector for the row id the inverted lists store. Search visits the ``nprobe`` nearest
of ``nlist`` k-means cells and ranks their codes by approximate inner product.

Vectors are added in chunks (any order of arrival fixes their rows), so encoding can run elsewhere,
e.g. on Ray workers (:func:`tagindex.engines.ray_engine.encode_with_ray`), and stream in. The
exact search (:func:`exact_neighbours`) is the oracle the benchmark measures recall against.

The index plugs into :class:`~tagindex.exemplars.ExemplarScorer` as its ``neighbour_index``: the
scorer's votes then come from the compressed neighbours (prototypes stay exact: they are one vector
per tag).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from tagindex.vector_index import exact_search

logger = logging.getLogger(__name__)

KINDS = ("ivf-pq", "ivf-opq", "ivf-sq8")
_PQ_KINDS = ("ivf-pq", "ivf-opq")


@dataclass
class CompressedParams:
    """How exemplar vectors are compressed and searched.

    Attributes:
        kind: ``ivf-pq`` or ``ivf-opq`` (``pq_m`` bytes a vector), or ``ivf-sq8`` (one byte a
            dimension).
        nlist: k-means cells (None: ``4 * sqrt(n)`` of the expected size, at most ``n / 39``).
        nprobe: Cells searched per query.
        pq_m: Sub-quantisers of ``ivf-pq``/``ivf-opq`` (must divide the dimension); bytes a vector.
        pq_bits: Bits per sub-quantiser code.
        train_size: Vectors sampled to train the cells and codebooks.
        seed: Seed of the training sample and of k-means.
    """

    kind: str = "ivf-pq"
    nlist: int | None = None
    nprobe: int = 32
    pq_m: int = 16
    pq_bits: int = 8
    train_size: int = 100_000
    seed: int = 13

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_nlist(n: int) -> int:
    """Cells for ``n`` vectors: ~4 sqrt(n), with at least 39 training points a cell (FAISS's minimum)."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39 or 1))


class CompressedExemplarIndex:
    """Exemplar rows ``0..n-1`` as IVF codes; ``search`` returns approximate similarities and rows.

    Args:
        dim: Vector dimension.
        params: Compression and search settings.

    Example:
        >>> index = CompressedExemplarIndex(64, CompressedParams(kind="ivf-pq", pq_m=16))
        >>> index.train(sample, expected=10_000_000)
        >>> for chunk in chunks: index.add(chunk)
        >>> sims, rows = index.search(queries, 20)
    """

    def __init__(self, dim: int, params: CompressedParams | None = None) -> None:
        self.dim = dim
        self.params = params or CompressedParams()
        if self.params.kind not in KINDS:
            raise ValueError(f"unknown compressed exemplar kind '{self.params.kind}' ({', '.join(KINDS)})")
        if self.params.kind in _PQ_KINDS and dim % self.params.pq_m:
            raise ValueError(f"pq_m={self.params.pq_m} does not divide the dimension {dim}")
        self._index: Any = None

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def train(self, sample: np.ndarray, expected: int | None = None) -> None:
        """Trains cells (and codebooks) on ``sample`` (s, dim); ``expected``: the final size, for nlist."""
        p = self.params
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        nlist = p.nlist or default_nlist(expected or len(sample))
        nlist = min(nlist, max(1, len(sample) // 39))  # never more cells than the sample can train
        quantizer = faiss.IndexFlatIP(self.dim)
        ip = faiss.METRIC_INNER_PRODUCT
        if p.kind in _PQ_KINDS:
            index: Any = faiss.IndexIVFPQ(quantizer, self.dim, nlist, p.pq_m, p.pq_bits, ip)
        else:
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip
            )
            index.sq.rangestat_arg = 0.1  # vectors added later may fall outside the sample's range
        index.cp.seed = p.seed
        if p.kind == "ivf-opq":  # rotation first, then cells and codes on the rotated vectors
            index = faiss.IndexPreTransform(faiss.OPQMatrix(self.dim, p.pq_m), index)
        index.train(sample)
        self._index = index
        self._ivf().nprobe = min(p.nprobe, nlist)
        logger.info("trained %s on %d vectors: %d cells", p.kind, len(sample), nlist)

    def add(self, vectors: np.ndarray) -> None:
        """Appends vectors (n, dim) as the next rows."""
        if self._index is None:
            raise ValueError("train the compressed exemplar index before adding vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        self._index.add(vectors)

    def _ivf(self) -> Any:
        """The inverted-file index inside (under the rotation of ``ivf-opq``)."""
        return faiss.extract_index_ivf(self._index)

    def set_nprobe(self, nprobe: int) -> None:
        """Cells searched per query from now on (more: higher recall, slower search)."""
        self.params.nprobe = nprobe
        if self._index is not None:
            self._ivf().nprobe = min(nprobe, int(self._ivf().nlist))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k``: similarities (n, k) and rows (n, k), best first; -1 rows pad."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._index is None or self.ntotal == 0 or k <= 0:
            kk = max(k, 0)
            return np.full((len(queries), kk), -np.inf, np.float32), np.full((len(queries), kk), -1, np.int64)
        sims, rows = self._index.search(queries, k)
        return np.where(rows < 0, -np.inf, sims).astype(np.float32), rows.astype(np.int64)

    def bytes_per_vector(self) -> dict[str, float]:
        """Stored bytes a vector: ``codes`` (the compressed vector), ``ids`` (the inverted lists' row id)
        and ``total`` (codes + ids + the cells and codebooks shared by all, spread over the vectors)."""
        p = self.params
        codes = p.pq_m * p.pq_bits / 8 if p.kind in _PQ_KINDS else float(self.dim)
        shared = 0.0
        if self._index is not None:
            shared = 4.0 * self.dim * self._ivf().nlist  # centroids
            if p.kind == "ivf-opq":
                shared += 4.0 * self.dim * self.dim  # the rotation
            if p.kind in _PQ_KINDS:
                shared += 4.0 * self.dim * (1 << p.pq_bits)  # codebooks: pq_m x 2^bits x dim/pq_m floats
        n = max(self.ntotal, 1)
        return {"codes": codes, "ids": 8.0, "total": codes + 8.0 + shared / n}

    def save(self, path: str | Path) -> None:
        if self._index is None:
            raise ValueError("nothing to save: the compressed exemplar index is not trained")
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str | Path, params: CompressedParams) -> CompressedExemplarIndex:
        index: Any = faiss.read_index(str(path))
        out = cls(int(index.d), params)
        out._index = index
        out._ivf().nprobe = min(params.nprobe, int(out._ivf().nlist))
        return out


class ExactNeighbours:
    """The exact search over float32 exemplar vectors, in blocks of queries (the oracle; also a
    ``neighbour_index`` for :class:`~tagindex.exemplars.ExemplarScorer` that bounds its memory)."""

    def __init__(self, vectors: np.ndarray, max_scores: int = 32 << 20) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (m, dim)
        self.max_scores = max_scores  # floats in one block's (queries, m) score matrix

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_neighbours(queries, self.vectors, k, self.max_scores)


def exact_neighbours(
    queries: np.ndarray, vectors: np.ndarray, k: int, max_scores: int = 32 << 20
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products, ``max_scores`` floats of scores at a time: (n, k) sims and rows."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    block = max(1, max_scores // max(len(vectors), 1))
    parts = [exact_search(queries[i : i + block], vectors, k) for i in range(0, len(queries), block)]
    if not parts:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate([s for s, _ in parts]), np.concatenate([r for _, r in parts])


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k rows (n, k) found among its approximate rows (n, k')."""
    if not len(exact):
        return 0.0
    hits = [
        len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist())) for a, e in zip(approx, exact, strict=True)
    ]
    return float(np.mean(hits)) / exact.shape[1]
