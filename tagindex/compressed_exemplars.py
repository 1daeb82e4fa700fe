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

:class:`CodedExemplars` is what a saved index holds instead of its float32 exemplar matrix
(``tagindex index --exemplar-codes``): ids and labels, the codes, and :class:`LabelSums`, the exact
vector sum of each distinct label list, from which the scorer rebuilds every tag prototype exactly
for any vocabulary (tags added or retired later). Products judged later (:mod:`tagindex.learn`)
keep their float32 vectors beside the codes, as they do in every index.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from tagindex.vector_index import exact_search

logger = logging.getLogger(__name__)

KINDS = ("ivf-pq", "ivf-opq", "ivf-sq8")
_PQ_KINDS = ("ivf-pq", "ivf-opq")
FLOAT32 = "float32"
STORAGE_KINDS = (FLOAT32, *KINDS)  # what ``tagindex index --exemplar-codes`` accepts
CODES_FILE = "exemplar_codes.faiss"
LABEL_SUMS_FILE = "exemplar_label_sums.safetensors"


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressedParams:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"CompressedParams: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def default_nlist(n: int) -> int:
    """Cells for ``n`` vectors: ~4 sqrt(n), with at least 39 training points a cell (FAISS's minimum)."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39 or 1))


def check_trainable(n: int, params: CompressedParams) -> None:
    """Raises ValueError when ``n`` exemplars cannot train ``params``' codes (PQ codebooks need at
    least ``2 ** pq_bits`` training vectors, k-means cells one)."""
    need = (1 << params.pq_bits) if params.kind in _PQ_KINDS else 1
    if min(n, params.train_size) < need:
        raise ValueError(
            f"{params.kind} needs at least {need} exemplars to train its codes "
            f"({n} given, training sample {params.train_size}); use ivf-sq8 or float32 for small sets"
        )


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
        self._opq_pq: Any = None

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
        if p.kind in _PQ_KINDS and len(sample) < 39 * (1 << p.pq_bits):
            # FAISS would warn once per sub-quantiser (dozens of lines): say it once, here.
            logger.warning(
                "%d training vectors for %d PQ centroids a sub-quantiser: coarse codebooks "
                "(FAISS advises %d or more)",
                len(sample),
                1 << p.pq_bits,
                39 * (1 << p.pq_bits),
            )
            index.pq.cp.min_points_per_centroid = 1
        if p.kind == "ivf-opq":  # rotation first, then cells and codes on the rotated vectors
            opq = faiss.OPQMatrix(self.dim, p.pq_m)
            if len(sample) < 39 * (1 << p.pq_bits):
                # OPQMatrix only points at this quantiser: keep the Python object alive with ours.
                self._opq_pq = faiss.ProductQuantizer(self.dim, p.pq_m, p.pq_bits)
                self._opq_pq.cp.min_points_per_centroid = 1
                opq.pq = self._opq_pq
            index = faiss.IndexPreTransform(opq, index)
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

    @property
    def nlist(self) -> int:
        return 0 if self._index is None else int(self._ivf().nlist)

    def to_bytes(self) -> bytes:
        """The trained index as FAISS's own serialisation (no pickle)."""
        if self._index is None:
            raise ValueError("nothing to save: the compressed exemplar index is not trained")
        return bytes(faiss.serialize_index(self._index).tobytes())

    @classmethod
    def from_bytes(cls, data: bytes, params: CompressedParams) -> CompressedExemplarIndex:
        """Reads :meth:`to_bytes`; ValueError when the bytes are not such an index."""
        try:
            index: Any = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as exc:  # FAISS reports damaged input as a RuntimeError
            raise ValueError(f"not a FAISS index ({str(exc).splitlines()[0][:120]})") from None
        out = cls(int(index.d), params)
        out._index = index
        try:
            ivf = out._ivf()
        except RuntimeError:
            raise ValueError("not an inverted-file FAISS index") from None
        ivf.nprobe = min(params.nprobe, int(ivf.nlist))
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path, params: CompressedParams) -> CompressedExemplarIndex:
        return cls.from_bytes(Path(path).read_bytes(), params)


@dataclass
class LabelSums:
    """Exemplar vectors summed per distinct label list: all a coded index keeps for its prototypes.

    A tag's prototype is the normalised sum of the vectors of the exemplars whose most specific
    labels include it; which labels those are depends on the vocabulary of the moment, but always
    only on the label list, so the sum per label list rebuilds every prototype exactly.

    Attributes:
        labels: Distinct label lists, in order of first appearance.
        sums: Their vector sums (g, dim).
        counts: Exemplars per label list (g,); an entry may subtract a row again (count -1).
    """

    labels: list[tuple[str, ...]]
    sums: np.ndarray  # (g, dim)
    counts: np.ndarray  # (g,) int64

    @classmethod
    def of(cls, labels: Sequence[Sequence[str]], vectors: np.ndarray, sign: int = 1) -> LabelSums:
        """The sums of ``vectors`` (n, dim) by their ``labels``, times ``sign`` (+1 or -1)."""
        keys = [tuple(lab) for lab in labels]
        group_of: dict[tuple[str, ...], int] = {}
        rows = np.array([group_of.setdefault(k, len(group_of)) for k in keys], dtype=np.int64)
        dim = vectors.shape[1]
        sums = np.zeros((len(group_of), dim), dtype=np.float64)  # float64: millions of rows add up
        np.add.at(sums, rows, np.asarray(vectors, dtype=np.float64))
        counts = np.bincount(rows, minlength=len(group_of)).astype(np.int64)
        return cls(list(group_of), (sign * sums).astype(np.float32), sign * counts)

    def merge(self, other: LabelSums) -> LabelSums:
        """Both sets of sums, entries of the same label list added together."""
        position = {k: i for i, k in enumerate(self.labels)}
        labels = list(self.labels)
        for key in other.labels:
            if key not in position:
                position[key] = len(labels)
                labels.append(key)
        total = np.zeros((len(labels), self.sums.shape[1]), dtype=np.float64)
        total[: len(self.labels)] = self.sums
        count = np.zeros(len(labels), dtype=np.int64)
        count[: len(self.labels)] = self.counts
        where = np.array([position[k] for k in other.labels], dtype=np.int64)
        np.add.at(total, where, other.sums.astype(np.float64))
        np.add.at(count, where, other.counts)
        return LabelSums(labels, total.astype(np.float32), count)


class CodedExemplars:
    """Labelled products whose vectors are kept as IVF codes (see the module docstring).

    Rows ``0..codes.ntotal-1`` are in the codes; rows after them (``extra``: products judged later,
    :mod:`tagindex.learn`) keep float32 vectors. :meth:`search` finds neighbours among both.

    Args:
        ids: Product id of each row.
        labels: Label list of each row (may be empty: a row every label of which was rejected).
        codes: The compressed vectors of the first rows.
        label_sums: Exact vector sums per label list of every row (with later edits).
        extra: Float32 vectors (e, dim) of the rows after the codes.
    """

    def __init__(
        self,
        ids: list[str],
        labels: list[list[str]],
        codes: CompressedExemplarIndex,
        label_sums: LabelSums,
        extra: np.ndarray | None = None,
    ) -> None:
        self.ids = ids
        self.labels = labels
        self.codes = codes
        self.label_sums = label_sums
        self.extra = extra if extra is not None else np.zeros((0, codes.dim), dtype=np.float32)
        if len(ids) != len(labels) or len(ids) != codes.ntotal + len(self.extra):
            raise ValueError(
                f"coded exemplars: {len(ids)} ids, {len(labels)} label lists, {codes.ntotal} codes "
                f"+ {len(self.extra)} float32 rows"
            )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def kind(self) -> str:
        return self.codes.params.kind

    @classmethod
    def encode(
        cls,
        ids: list[str],
        labels: list[list[str]],
        vectors: np.ndarray,
        params: CompressedParams,
        chunk: int = 65_536,
    ) -> CodedExemplars:
        """Trains codes on a seeded sample of ``vectors`` (n, dim) and adds them all, chunk by chunk.

        Raises:
            ValueError: Too few vectors to train the codes (:func:`check_trainable`).
        """
        rng = np.random.default_rng(params.seed)
        n = len(vectors)
        check_trainable(n, params)
        sample = (
            np.sort(rng.choice(n, size=params.train_size, replace=False)) if n > params.train_size else None
        )
        codes = CompressedExemplarIndex(vectors.shape[1], params)
        codes.train(vectors if sample is None else vectors[sample], expected=n)
        for start in range(0, n, chunk):
            codes.add(vectors[start : start + chunk])
        return cls(list(ids), [list(lab) for lab in labels], codes, LabelSums.of(labels, vectors))

    def add(self, ids: Sequence[str], labels: Sequence[Sequence[str]], vectors: np.ndarray) -> CodedExemplars:
        """A new set with these rows appended to the codes (the trained cells are kept).

        The codes grow in place, so this set is superseded by the one returned (its ids no longer
        cover every code); :class:`~tagindex.index.TagIndex` swaps them and drops its scorer.

        Raises:
            ValueError: The set already has float32 rows after its codes (learned products).
        """
        if len(self.extra):
            raise ValueError("coded exemplars with learned rows: add to the base set, not to a learned view")
        self.codes.add(vectors)
        return CodedExemplars(
            self.ids + list(ids),
            self.labels + [list(lab) for lab in labels],
            self.codes,
            self.label_sums.merge(LabelSums.of(labels, vectors)),
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows: approximate among the codes, exact among the float32 rows; -1 pads."""
        sims, rows = self.codes.search(queries, k)
        if not len(self.extra) or k <= 0:
            return sims, rows
        extra_sims, extra_rows = exact_neighbours(queries, self.extra, min(k, len(self.extra)))
        sims = np.concatenate([sims, extra_sims], axis=1)
        rows = np.concatenate([rows, extra_rows + self.codes.ntotal], axis=1)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def bytes_per_exemplar(self) -> dict[str, float]:
        return self.codes.bytes_per_vector()

    def describe(self, file_bytes: int | None = None) -> dict[str, Any]:
        """The manifest's ``exemplar_storage`` entry."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "params": self.codes.params.to_dict(),
            "nlist": self.codes.nlist,
            "bytes_per_exemplar": self.bytes_per_exemplar(),
            "label_lists": len(self.label_sums.labels),
        }
        if file_bytes is not None:
            out["codes_file_bytes"] = file_bytes
        return out

    def save(self, directory: Path) -> int:
        """Writes the codes and the label sums into ``directory``; returns the codes file's size.

        Ids and labels go to ``exemplars.parquet`` (written by the caller, as for float32 exemplars);
        float32 rows after the codes are never saved here (they belong to the learned state).
        """
        from safetensors.numpy import save_file

        if len(self.extra):
            raise ValueError("save the base coded exemplars, not a view with learned rows")
        data = self.codes.to_bytes()
        (directory / CODES_FILE).write_bytes(data)
        save_file(
            {"sums": np.ascontiguousarray(self.label_sums.sums), "counts": self.label_sums.counts},
            str(directory / LABEL_SUMS_FILE),
        )
        return len(data)

    @classmethod
    def load(
        cls, directory: Path, ids: list[str], labels: list[list[str]], params: CompressedParams, dim: int
    ) -> CodedExemplars:
        """Reads what :meth:`save` wrote, checked against the exemplar table's ids and labels.

        Raises:
            ValueError: A file is unreadable or disagrees with the table (the message names it).
        """
        from safetensors.numpy import load_file

        path = directory / CODES_FILE
        try:
            codes = CompressedExemplarIndex.from_bytes(path.read_bytes(), params)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: unreadable exemplar codes: {exc}") from None
        if codes.dim != dim or codes.ntotal != len(ids):
            raise ValueError(
                f"{path}: {codes.ntotal} codes of dimension {codes.dim}, expected {len(ids)} of {dim}"
            )
        sums_path = directory / LABEL_SUMS_FILE
        try:
            stored = load_file(str(sums_path))
            sums, counts = stored["sums"], stored["counts"]
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{sums_path}: unreadable label sums: {exc}") from None
        # The label lists are the table's, in order of first appearance; their counts must agree.
        expected = LabelSums.of(labels, np.zeros((len(labels), 1), np.float32))
        if sums.shape != (len(expected.labels), dim) or not np.array_equal(counts, expected.counts):
            raise ValueError(f"{sums_path}: label sums disagree with the exemplar table")
        return cls(ids, labels, codes, LabelSums(expected.labels, sums, counts))


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
