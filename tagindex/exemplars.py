"""Exemplar scoring: labelled product vectors living in the index beside the tag text vectors.

A tag with labelled products is matched mostly through them (neighbour votes and a per-tag
prototype); a tag without any is matched through its text alone. One rule scores both:

    base(t)  = (1 - lam_t) * (cos(q, text_t) + unseen_offset) + lam_t * cos(q, prototype_t)
    score(t) = base(t) + vote_weight * vote(t) + parent_vote_weight * vote(siblings of t)

with ``lam_t = n_t / (n_t + shrinkage)``, where ``n_t`` is the number of exemplars whose most specific
label is ``t`` (so ``lam_t = 0`` for unseen tags), ``vote(t)`` is the softmax-weighted share of the
``k`` nearest exemplars labelled ``t`` and ``vote(siblings of t)`` the share labelled with any tag
under ``t``'s parent. ``unseen_offset`` and ``parent_vote_weight`` let tags without examples compete
with tags that have them; :mod:`tagindex.gate` fits them. Only the most specific tags (leaves, and
tags used as the deepest label of some exemplar) are scored; their ancestors follow from the hierarchy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from tagindex.compressed_exemplars import FLOAT32, CodedExemplars, CompressedParams
from tagindex.config import ExemplarParams
from tagindex.errors import CompatibilityError
from tagindex.schema import Tag
from tagindex.store import IndexFormatError
from tagindex.text import ancestors

logger = logging.getLogger(__name__)


def most_specific(
    tag_ids: Sequence[str], by_id: Mapping[str, Tag], has_children: set[str] | None = None
) -> list[str]:
    """The deepest labels of one product.

    Drops labels that are an ancestor of another of its labels, and inner tags (tags with children)
    when the product has a deeper label elsewhere: noisy data can label a product with a level-2 tag
    that is not the parent of its level-3 tag (MWPD does), and that label is not the product's
    most specific one. Leaves from other branches (multi-label products) are all kept.
    """
    present = [t for t in dict.fromkeys(tag_ids) if t in by_id]
    covered: set[str] = set()
    for t in present:
        covered.update(ancestors(t, by_id))
    kept = [t for t in present if t not in covered]
    if len(kept) < 2:
        return kept
    if has_children is None:
        has_children = {t.parent for t in by_id.values() if t.parent is not None}
    depth = {t: len(ancestors(t, by_id)) for t in kept}
    deepest = max(depth.values())
    return [t for t in kept if t not in has_children or depth[t] == deepest]


@dataclass
class ExemplarSet:
    """Labelled product vectors: ids, label lists and unit vectors (m, dim)."""

    ids: list[str]
    labels: list[list[str]]
    vectors: np.ndarray  # (m, dim)

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.labels) == len(self.vectors)):
            raise ValueError("exemplar ids, labels and vectors differ in length")

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, other: ExemplarSet) -> ExemplarSet:
        return ExemplarSet(
            self.ids + other.ids, self.labels + other.labels, np.concatenate([self.vectors, other.vectors])
        )


class NeighbourSearch(Protocol):
    """Top-k search over the exemplar rows: similarities (n, k) and rows (n, k), best first, -1 pads
    (e.g. :class:`tagindex.compressed_exemplars.CompressedExemplarIndex`)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class ExemplarScorer:
    """Scores the most specific tags of a vocabulary for query vectors (see module docstring).

    Built once per (tags, exemplars) state; :meth:`score` is pure numpy and deterministic.

    ``neighbour_index``, when given, finds the voting neighbours instead of the exact product with
    every exemplar vector (an approximate, compressed index for very large exemplar sets); its rows
    are the rows of ``exemplars``, which must all keep a label in the vocabulary.

    :class:`~tagindex.compressed_exemplars.CodedExemplars` (an index saved with exemplar codes) are
    their own neighbour index; prototypes come from their exact label sums, so only the votes are
    approximate. Their rows are fixed by the codes: a row left without a label in the vocabulary is
    kept out of the neighbours instead of being dropped. There are no float32 vectors
    (``ex_vectors`` is None), so leave-one-out scoring of an exemplar is refused.
    """

    def __init__(
        self,
        tags: Sequence[Tag],
        tag_vectors: np.ndarray,  # (n_tags, dim), rows aligned with ``tags``
        exemplars: ExemplarSet | CodedExemplars,
        params: ExemplarParams | None = None,
        neighbour_index: NeighbourSearch | None = None,
    ) -> None:
        self.params = params or ExemplarParams()
        coded = exemplars if isinstance(exemplars, CodedExemplars) else None
        self.storage = "float32" if coded is None else coded.kind
        self.neighbour_index = neighbour_index if coded is None else coded
        by_id = {t.id: t for t in tags}
        row_of = {t.id: i for i, t in enumerate(tags)}
        has_child = {t.parent for t in tags if t.parent is not None}
        # Labels per exemplar reduced to the deepest ones still in the vocabulary.
        # Reduced once per distinct label list (millions of exemplars share a few thousand lists).
        reduced: dict[tuple[str, ...], list[str]] = {}
        ex_labels = []
        for labels in exemplars.labels:
            key = tuple(labels)
            if key not in reduced:
                reduced[key] = most_specific(labels, by_id, has_child)
            ex_labels.append(reduced[key])
        used = {t for labels in ex_labels for t in labels}
        self.targets = [t.id for t in tags if t.id not in has_child or t.id in used]
        target_col = {tid: j for j, tid in enumerate(self.targets)}
        self.target_vectors = tag_vectors[[row_of[t] for t in self.targets]]  # (n_targets, dim)
        keep = [i for i, labels in enumerate(ex_labels) if labels or coded is not None]
        # Rows kept only because the codes fix the rows (no label left): never a neighbour.
        self.masked: np.ndarray | None = None
        unlabelled = sum(1 for labels in ex_labels if not labels)
        if unlabelled:
            logger.info("%d exemplar(s) have no label left in the vocabulary", unlabelled)
            if coded is not None:
                self.masked = np.array([not labels for labels in ex_labels], dtype=bool)
            elif neighbour_index is not None:  # its rows would no longer line up with ours
                raise ValueError("a neighbour index needs every exemplar to keep a label in the vocabulary")
        # (m, dim); None for coded exemplars, whose vectors exist only as codes.
        self.ex_vectors: np.ndarray | None = None if coded is not None else exemplars.vectors[keep]  # type: ignore[union-attr]
        self.n_rows = len(keep)
        self.n_masked = unlabelled if coded is not None else 0
        self.ex_ids = [exemplars.ids[i] for i in keep]
        n_targets, dim = len(self.targets), tag_vectors.shape[1]
        # Sparse exemplar -> target membership, as index arrays (one entry per (exemplar, label)).
        rows, cols = [], []
        for r, i in enumerate(keep):
            for t in ex_labels[i]:
                rows.append(r)
                cols.append(target_col[t])
        self.member_rows = np.asarray(rows, dtype=np.int64)
        self.member_cols = np.asarray(cols, dtype=np.int64)
        width = max((len(ex_labels[i]) for i in keep), default=1)
        self.label_table = np.full((len(keep), width), -1, dtype=np.int64)  # (m, max_labels)
        for r, i in enumerate(keep):
            self.label_table[r, : len(ex_labels[i])] = [target_col[t] for t in ex_labels[i]]
        if coded is None:
            assert self.ex_vectors is not None
            counts = np.bincount(self.member_cols, minlength=n_targets).astype(np.float32)  # (n_targets,)
            sums = np.zeros((n_targets, dim), dtype=np.float32)
            np.add.at(sums, self.member_cols, self.ex_vectors[self.member_rows])
        else:
            sums, counts = self._coded_sums(coded, by_id, has_child, target_col, dim)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        self.prototypes = sums / np.maximum(norms, 1e-12)  # (n_targets, dim); zero rows for unseen tags
        self.sums = sums
        self.counts = counts
        self._row_of_id: dict[str, int] | None = None  # built on first use (leave-one-out only)
        shrink = max(self.params.shrinkage, 0.0)
        self.lam = (counts / (counts + shrink) if shrink > 0 else (counts > 0).astype(np.float32)).astype(
            np.float32
        )  # (n_targets,)
        # Sibling groups: targets sharing a parent; -1 for targets at the root (no parent vote).
        parent_of = [by_id[t].parent for t in self.targets]
        group_ids = {g: i for i, g in enumerate(dict.fromkeys(g for g in parent_of if g is not None))}
        self.group = np.array([group_ids[g] if g is not None else -1 for g in parent_of], dtype=np.int64)
        self.n_groups = len(group_ids)

    @staticmethod
    def _coded_sums(
        coded: CodedExemplars,
        by_id: Mapping[str, Tag],
        has_child: set[str],
        target_col: Mapping[str, int],
        dim: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-target vector sums (n_targets, dim) and counts (n_targets,) from the label sums."""
        sums = np.zeros((len(target_col), dim), dtype=np.float64)
        counts = np.zeros(len(target_col), dtype=np.float64)
        label_sums = coded.label_sums
        for key, vector, count in zip(label_sums.labels, label_sums.sums, label_sums.counts, strict=True):
            if count == 0:  # every row of this label list was edited away by judgements
                continue
            for t in most_specific(list(key), by_id, has_child):
                sums[target_col[t]] += vector
                counts[target_col[t]] += count
        return sums.astype(np.float32), counts.astype(np.float32)

    def exemplar_rows(self, ids: Sequence[str]) -> np.ndarray:
        """Exemplar row of each id, -1 for ids that are not exemplars (n,)."""
        if self._row_of_id is None:  # the first row of a repeated id
            self._row_of_id = {pid: r for r, pid in reversed(list(enumerate(self.ex_ids)))}
        return np.array([self._row_of_id.get(i, -1) for i in ids], dtype=np.int64)

    def score(self, queries: np.ndarray, chunk: int = 512, exclude: np.ndarray | None = None) -> np.ndarray:
        """Scores (n, n_targets) for unit query vectors (n, dim), columns in ``self.targets`` order.

        Args:
            queries: Unit query vectors (n, dim).
            chunk: Queries scored per matrix product.
            exclude: Per query, an exemplar row scored as if it were not stored (-1: none), shape (n,).
                Scoring a labelled product against exemplars that include it would let it vote for
                its own tags; training and calibration on such products use this leave-one-out view.
        """
        p = self.params
        if exclude is not None and self.ex_vectors is None and (exclude >= 0).any():
            raise CompatibilityError(
                f"leave-one-out scoring of an exemplar needs its float32 vector; this index stores its "
                f"exemplars as {self.storage} codes (rebuild it with --exemplar-codes float32 to "
                "calibrate, optimize or train a reranker on its own labelled products)"
            )
        out = np.empty((len(queries), len(self.targets)), dtype=np.float32)
        lam = self.lam[None, :]
        for start in range(0, len(queries), chunk):
            q = np.asarray(queries[start : start + chunk], dtype=np.float32)  # (b, dim)
            own = None if exclude is None else exclude[start : start + chunk]  # (b,)
            text = q @ self.target_vectors.T  # (b, n_targets)
            proto = q @ self.prototypes.T  # (b, n_targets)
            scores = (1.0 - lam) * (text + p.unseen_offset) + lam * proto
            if own is not None:
                self._leave_out(scores, q, text, own)
            if (p.vote_weight or p.parent_vote_weight) and self.n_rows > self.n_masked and p.k > 0:
                votes = self.votes(q, own, text.max(axis=1, keepdims=True))  # (b, n_targets)
                scores += p.vote_weight * votes
                if p.parent_vote_weight:
                    scores += p.parent_vote_weight * self.sibling_votes(votes)
            out[start : start + chunk] = scores
        return out

    def _leave_out(self, scores: np.ndarray, q: np.ndarray, text: np.ndarray, own: np.ndarray) -> None:
        """Rescores, in place, the label columns of queries whose own exemplar row is excluded."""
        p = self.params
        shrink = max(p.shrinkage, 0.0)
        for i in np.flatnonzero(own >= 0):
            r = int(own[i])
            assert self.ex_vectors is not None  # score() refuses leave-one-out on coded exemplars
            for j in self.label_table[r][self.label_table[r] >= 0]:
                n = self.counts[j] - 1.0
                rest = self.sums[j] - self.ex_vectors[r]  # (dim,)
                norm = float(np.linalg.norm(rest))
                proto = float(q[i] @ rest) / norm if n > 0 and norm > 1e-12 else 0.0
                lam = (n / (n + shrink) if shrink > 0 else float(n > 0)) if n > 0 else 0.0
                scores[i, j] = (1.0 - lam) * (text[i, j] + p.unseen_offset) + lam * proto

    def neighbours(self, q: np.ndarray, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest exemplars of each query: similarities (b, k) and exemplar rows (b, k), best first.

        ``exclude`` (b,) names one exemplar row per query that may not be a neighbour (-1: none).
        """
        k = min(self.params.k, self.n_rows - self.n_masked - (0 if exclude is None else 1))
        if self.neighbour_index is not None:
            return self._indexed_neighbours(q, k, exclude)
        assert self.ex_vectors is not None
        sims = q @ self.ex_vectors.T  # (b, m)
        if exclude is not None:
            rows = np.flatnonzero(exclude >= 0)
            sims[rows, exclude[rows]] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (b, k), unordered
        top_sims = np.take_along_axis(sims, top, axis=1)
        # Stable order: by similarity, then by exemplar row, so ties never depend on argpartition.
        order = np.lexsort((top, -top_sims), axis=1)
        return np.take_along_axis(top_sims, order, axis=1), np.take_along_axis(top, order, axis=1)

    def _indexed_neighbours(
        self, q: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`neighbours` through ``neighbour_index`` (more fetched to drop an excluded row and the
        masked rows)."""
        assert self.neighbour_index is not None
        # Masked rows (no label left) take places in the search: fetch that many more, but at most
        # 4k + 32 more, so retiring a large branch cannot make every search fetch millions of rows;
        # a product whose neighbourhood is mostly retired rows then votes with fewer neighbours.
        extra = min(self.n_masked, 4 * k + 32) + (0 if exclude is None else 1)
        sims, rows = self.neighbour_index.search(q, k + extra)
        sims = np.where(rows < 0, -np.inf, sims)
        if exclude is not None:
            sims = np.where(rows == exclude[:, None], -np.inf, sims)
        if self.masked is not None:
            sims = np.where(self.masked[np.maximum(rows, 0)], -np.inf, sims)
        # The same order as the exact path: by similarity, then by row; dropped rows sort last.
        order = np.lexsort((rows, -sims), axis=1)[:, :k]
        sims, rows = np.take_along_axis(sims, order, axis=1), np.take_along_axis(rows, order, axis=1)
        return sims, np.where(np.isfinite(sims), rows, -1)

    def votes(
        self, q: np.ndarray, exclude: np.ndarray | None = None, best_text: np.ndarray | None = None
    ) -> np.ndarray:
        """Softmax-weighted share of each target among the k nearest exemplars: (b, n_targets) in [0, 1].

        ``best_text`` (b, 1): each query's highest tag-text similarity, when the caller has it already
        (only read while the index holds fewer than k exemplars).
        """
        sims, rows = self.neighbours(q, exclude)  # (b, k)
        if not sims.shape[1]:
            return np.zeros((len(q), len(self.targets)), dtype=np.float32)
        temperature = max(self.params.temperature, 1e-6)
        with np.errstate(invalid="ignore"):
            weights = np.exp((sims - sims[:, :1]) / temperature)  # (b, k)
        # An approximate neighbour index may find fewer than k (sim -inf, row -1): weight 0, and a
        # query that found none at all (-inf - -inf = nan) votes for nothing.
        weights = np.nan_to_num(weights, nan=0.0)
        total = weights.sum(axis=1, keepdims=True)  # (b, 1)
        missing = self.params.k - sims.shape[1]
        if missing > 0:
            # Fewer exemplars than k (a cold index, the first judgements): the softmax over the few
            # there are would give a lone exemplar the whole vote of every product, however far.
            # The missing neighbours are taken to be as near as the product's best-matching tag
            # text, so an exemplar dominates only where it is closer than any tag's own text.
            if best_text is None:
                best_text = (q @ self.target_vectors.T).max(axis=1, keepdims=True)  # (b, 1)
            total = total + missing * np.exp((best_text - sims[:, :1]) / temperature)
        weights /= np.maximum(total, 1e-30)
        votes = np.zeros((len(q), len(self.targets)), dtype=np.float32)
        # Each exemplar votes with its full weight for every one of its labels (multi-label products
        # are not split), via the padded (m, max_labels) label table.
        cols = self.label_table[rows]  # (b, k, max_labels), -1 = padding
        valid = cols >= 0
        b_idx = np.broadcast_to(np.arange(len(q))[:, None, None], cols.shape)
        w = np.broadcast_to(weights[:, :, None], cols.shape)
        np.add.at(votes, (b_idx[valid], cols[valid]), w[valid])
        return votes

    def sibling_votes(self, votes: np.ndarray) -> np.ndarray:
        """Per target, the vote share of all targets under its parent (b, n_targets); 0 at the root.

        A tag without exemplars gets no vote of its own, but a product's neighbours labelled with its
        siblings still say which branch the product belongs to.
        """
        inner = self.group >= 0
        per_group = np.zeros((len(votes), self.n_groups + 1), dtype=np.float32)  # last column: root
        np.add.at(per_group.T, np.where(inner, self.group, self.n_groups), votes.T)
        out = per_group[:, np.where(inner, self.group, self.n_groups)]
        out[:, ~inner] = 0.0
        return out

    def top(
        self, queries: np.ndarray, top_k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Best ``top_k`` targets per query: scores (n, k) and tag ids, best first (ties by tag order)."""
        scores = self.score(queries, exclude=exclude)
        k = min(top_k, scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), [[self.targets[j] for j in row] for row in order]


EXEMPLAR_VECTORS = "exemplar_vectors.safetensors"
EXEMPLAR_TABLE = "exemplars.parquet"


def save_exemplars(directory: Path, exemplars: ExemplarSet | CodedExemplars) -> dict[str, Any] | None:
    """Writes ``exemplars.parquet`` (id, tags) and the vectors into ``directory``.

    Float32 exemplars go to ``exemplar_vectors.safetensors`` (returns None: the manifest is as it
    always was); coded ones to their codes and label sums (returns the manifest's
    ``exemplar_storage`` entry).
    """
    pd.DataFrame({"id": exemplars.ids, "tags": exemplars.labels}).to_parquet(
        directory / EXEMPLAR_TABLE, index=False
    )
    if isinstance(exemplars, CodedExemplars):
        return exemplars.describe(exemplars.save(directory))
    save_file({"vectors": np.ascontiguousarray(exemplars.vectors)}, str(directory / EXEMPLAR_VECTORS))
    return None


def load_exemplars(
    directory: Path, dim: int, storage: Mapping[str, Any] | None = None
) -> ExemplarSet | CodedExemplars | None:
    """Reads what :func:`save_exemplars` wrote; None when the index has no exemplars.

    Args:
        directory: The index version directory.
        dim: The index's vector dimension.
        storage: The manifest's ``exemplar_storage`` entry (None or kind float32: float32 vectors).
    """
    if not (directory / EXEMPLAR_TABLE).exists():
        return None
    table = pd.read_parquet(directory / EXEMPLAR_TABLE)
    # One list object per distinct label list: millions of exemplars share a few thousand lists.
    shared: dict[tuple[str, ...], list[str]] = {}
    labels = [shared.setdefault(tuple(t), list(t)) for t in table["tags"]]
    if storage is not None and storage.get("kind", FLOAT32) != FLOAT32:
        try:
            params = CompressedParams.from_dict(dict(storage["params"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFormatError(f"{directory}: bad exemplar_storage in the manifest: {exc}") from None
        try:
            return CodedExemplars.load(directory, table["id"].astype(str).tolist(), labels, params, dim)
        except ValueError as exc:  # its message names the file
            raise IndexFormatError(str(exc)) from None
    vectors = load_file(str(directory / EXEMPLAR_VECTORS))["vectors"]
    if len(table) != len(vectors) or vectors.shape[1] != dim:
        raise IndexFormatError(
            f"{directory}: exemplar table and vectors disagree ({len(table)} vs {vectors.shape})"
        )
    return ExemplarSet(table["id"].astype(str).tolist(), labels, vectors)
