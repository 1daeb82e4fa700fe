"""The one tagging pipeline: encode -> candidates -> optional rerank -> threshold -> ancestors ->
calibrated decision (-> explanation, by :class:`tagindex.explain.Explainer` over a pipeline).

The CLI (``tagindex tag``, ``calibrate``, ``explain``), the service's rerank stage, calibration fitting,
explanations and the benchmarks all rank through :class:`TaggingPipeline`, so the stages run in one
order and every compatibility check between the parts (index, reranker, score fusion, calibration,
vocabulary, rerank depth) is made here, once, when a pipeline is built:

- a calibration fitted on reranker scores needs that very reranker (the fingerprint it recorded);
- a calibration fitted on another vocabulary (hierarchy levels this index does not have) is refused;
- a reranker whose score fusion was fitted on another index's first-stage scores is refused (it
  would rank differently from how it was fitted, and a calibration would misread its scores);
- a rerank depth must be at least 1 (and at most ``max_depth`` when one is set).

Each failure raises :class:`tagindex.errors.CompatibilityError` naming what to fix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagindex.candidates import (
    RankedCandidates,
    assign,
    from_bi_encoder,
    insert_ancestors,
    scored_pairs,
    tag_level,
)
from tagindex.errors import CompatibilityError
from tagindex.registry import RERANKERS
from tagindex.schema import Product, Tag, TagResult

if TYPE_CHECKING:
    from tagindex.calibration import Assigned, Calibration, Hierarchy
    from tagindex.index import TagIndex
    from tagindex.interfaces import Reranker
    from tagindex.kinds import KindPolicy

logger = logging.getLogger(__name__)

DEFAULT_RERANKER_TYPE = "cross-encoder"  # saved rerankers from before the type was recorded


def load_reranker(path: str | os.PathLike[str], verify: bool = True) -> Reranker:
    """Loads a saved reranker with the type its manifest names (:data:`tagindex.registry.RERANKERS`)."""
    from tagindex.cross_encoder import KIND
    from tagindex.store import read_manifest

    manifest = read_manifest(path, KIND, verify=False)
    kind = str(manifest.get("reranker_type") or DEFAULT_RERANKER_TYPE)
    reranker: Reranker = RERANKERS.get(kind).load(path, verify=verify)
    return reranker


def check_calibration(
    calibration: Calibration | None,
    by_id: Mapping[str, Tag],
    has_reranker: bool,
    reranker_fingerprint: str | None,
    source: str = "the calibration",
) -> None:
    """Refuses a calibration that cannot read this pipeline's scores.

    Args:
        calibration: The calibration (None: nothing to check).
        by_id: The index's vocabulary.
        has_reranker: Whether a reranker is configured.
        reranker_fingerprint: Its fingerprint.
        source: How to name the calibration in messages (its file).

    Raises:
        CompatibilityError: It reads reranker scores without (or of another) reranker, or belongs to
            another vocabulary.
    """
    if calibration is None:
        return
    if calibration.score == "rerank":
        if not has_reranker:
            raise CompatibilityError(
                f"{source}: the calibration was fitted on reranker scores: configure its reranker too "
                "(--reranker / TAGINDEX_RERANKER_DIR)"
            )
        if calibration.reranker != reranker_fingerprint:
            raise CompatibilityError(
                f"the calibration was fitted for reranker {calibration.reranker}, but the configured "
                f"reranker is {reranker_fingerprint}: refit it with `tagindex calibrate --reranker DIR` "
                f"({source})"
            )
    # A calibration of another hierarchy has thresholds for levels this index does not have, and would
    # decide with maps fitted for the wrong levels.
    index_levels = {str(tag_level(t, by_id)) for t in by_id}
    fitted = set(calibration.thresholds)
    if fitted and not fitted <= index_levels:
        raise CompatibilityError(
            f"{source}: fitted for hierarchy levels {sorted(fitted)}, but this index has levels "
            f"{sorted(index_levels)}: it belongs to another vocabulary"
        )


def check_depth(depth: int | None, max_depth: int | None = None, has_reranker: bool = True) -> None:
    """Refuses a rerank depth below 1, above ``max_depth`` or without a reranker.

    Raises:
        CompatibilityError: As above.
    """
    if depth is None:
        return
    if not has_reranker:
        raise CompatibilityError("a rerank depth is set but no reranker (--reranker / TAGINDEX_RERANKER_DIR)")
    if depth < 1:
        raise CompatibilityError(f"rerank depth must be at least 1, got {depth}")
    if max_depth is not None and depth > max_depth:
        raise CompatibilityError(
            f"rerank depth {depth} is outside 1..{max_depth} (TAGINDEX_MAX_RERANK_DEPTH)"
        )


@dataclass
class Tagged:
    """One product through the pipeline.

    Attributes:
        result: The run-file result (threshold applied, ancestors inserted when asked).
        ranked: The ranked candidates before the threshold (scores of every stage).
        assigned: The calibrated decision, or None when no decision was asked for or possible.
    """

    result: TagResult
    ranked: RankedCandidates
    assigned: list[Assigned] | None = None

    def to_record(self) -> dict[str, Any]:
        """The run-file line: ``id`` and ``tags`` in the contract format, decisions in ``assigned``."""
        record = self.result.to_dict()
        if self.assigned is not None:
            record["assigned"] = [a.to_dict() for a in self.assigned]
        return record


class TaggingPipeline:
    """An index with an optional reranker and calibration that were checked to belong together.

    Args:
        index: The tag index (first stage: encoder, FAISS, exemplars, optional vector fusion).
        reranker: Optional reranker (:class:`tagindex.interfaces.Reranker`).
        calibration: Optional calibration (:class:`tagindex.calibrate.Calibration`).
        depth: Default rerank depth (None: the reranker's own).
        max_depth: Largest depth a call may ask for (None: unbounded).
        hierarchy: Hierarchy mode of calibrated decisions.
        calibration_source: How messages name the calibration (its file).

    Raises:
        CompatibilityError: The parts do not belong together (see the module docstring).

    Example:
        >>> pipeline = TaggingPipeline(index, reranker, calibration)
        >>> [t.to_record() for t in pipeline.tag(products, top_k=10, decide=True)]
    """

    def __init__(
        self,
        index: TagIndex,
        reranker: Reranker | None = None,
        calibration: Calibration | None = None,
        depth: int | None = None,
        max_depth: int | None = None,
        hierarchy: Hierarchy = "close",
        calibration_source: str = "the calibration",
    ) -> None:
        self.index = index
        self.reranker = reranker
        self.calibration = calibration
        self.max_depth = max_depth
        self.hierarchy = hierarchy
        self.depth = depth if depth is not None else (reranker.depth if reranker is not None else None)
        self.check(index.by_id, calibration_source)

    def check(self, by_id: Mapping[str, Tag], calibration_source: str = "the calibration") -> None:
        """Every compatibility check of the module docstring, against the vocabulary ``by_id``.

        Raises:
            CompatibilityError: The parts do not belong together.
        """
        reranker = self.reranker
        check_depth(self.depth, self.max_depth, reranker is not None)
        if reranker is not None:
            reason = reranker.mismatch(self.index)
            if reason is not None:
                raise CompatibilityError(reason)
        check_calibration(
            self.calibration,
            by_id,
            reranker is not None,
            reranker.fingerprint if reranker is not None else None,
            calibration_source,
        )

    @classmethod
    def from_files(
        cls,
        index: TagIndex,
        reranker: str | os.PathLike[str] | None = None,
        calibration: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> TaggingPipeline:
        """A pipeline from a loaded index and the paths of a saved reranker and calibration file."""
        from tagindex.calibration import Calibration

        loaded = load_reranker(reranker) if reranker is not None else None
        cal = Calibration.load(calibration) if calibration is not None else None
        source = str(Path(calibration)) if calibration is not None else "the calibration"
        return cls(index, loaded, cal, calibration_source=source, **kwargs)

    # ---- stages ---------------------------------------------------------------------------------
    def can_decide(self, rerank: bool = True) -> bool:
        """Whether the calibration can read the scores of a call that reranks (or not)."""
        return self.calibration is not None and (self.calibration.score == "bi_encoder" or rerank)

    def resolve_depth(self, depth: int | None) -> int | None:
        """A call's rerank depth: its own (checked) or the pipeline's default."""
        if depth is None:
            return self.depth
        check_depth(depth, self.max_depth, self.reranker is not None)
        return depth

    def rank(
        self,
        products: Sequence[Product],
        top_k: int,
        rerank: bool = True,
        depth: int | None = None,
        vectors: np.ndarray | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        show_progress: bool = False,
        leave_one_out: bool = False,
    ) -> list[RankedCandidates]:
        """Encode -> candidates -> rerank (when configured and ``rerank``), ``top_k`` per product.

        With a reranker, ``max(top_k, depth)`` bi-encoder candidates are fetched so the whole rerank
        depth is rescored even when fewer tags are shown.

        Args:
            products: Products to rank tags for.
            top_k: Candidates kept per product.
            rerank: Use the reranker when one is configured.
            depth: Rerank depth (default: the pipeline's).
            vectors: Product vectors (n, dim) when already encoded.
            cache_dir: Product vector cache directory.
            show_progress: Show progress bars.
            leave_one_out: Score products stored as exemplars as if they were not (labelled dev products).
        """
        if top_k < 1:
            raise ValueError(f"top-k must be at least 1, got {top_k}")
        reranker = self.reranker if rerank else None
        depth = self.resolve_depth(depth) if reranker is not None else None
        index = self.index
        if vectors is None:
            vectors = index.encode_products(products, cache_dir=cache_dir, show_progress=show_progress)
        ranked = from_bi_encoder(
            index.tag_vectors(
                [p.id for p in products],
                vectors,
                max(top_k, depth or 0),
                leave_one_out=leave_one_out,
                titles=index.match_texts(products),
            )
        )
        if reranker is not None:
            ranked = reranker.rerank(index, products, ranked, depth, show_progress=show_progress)
        return [RankedCandidates(r.id, r.candidates[:top_k]) for r in ranked]

    def rank_kinds(
        self,
        policy: KindPolicy,
        products: Sequence[Product],
        top_k: int,
        rerank: bool = True,
        depth: int | None = None,
        vectors: np.ndarray | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        show_progress: bool = False,
        by_id: Mapping[str, Tag] | None = None,
        title_vectors: np.ndarray | None = None,
    ) -> list[RankedCandidates]:
        """:meth:`rank` from the policy's deeper pool, then the policy's selection (at most ``top_k``).

        ``vectors`` and ``title_vectors`` (the titles alone, for a category title weight) are encoded
        here when not given.

        Raises:
            CompatibilityError: The policy rescores kinds from cosines, but these scores are not
                cosines (a reranker, exemplars or an adapted index rank them).
            InputError: The policy names kinds the vocabulary lacks.
        """
        from tagindex.kinds import rescore, title_texts

        if top_k < 1:
            raise ValueError(f"top-k must be at least 1, got {top_k}")
        index = self.index
        by_id = index.by_id if by_id is None else by_id
        policy.check(by_id)
        rescored = None
        if policy.rescored_kinds:
            # Rescoring reads every tag of a kind from plain cosines: it would bypass what ranks
            # otherwise (a reranker, exemplars, judged products, an adapter).
            if (
                (rerank and self.reranker is not None)
                or index.scorer() is not None
                or index.adjuster is not None
            ):
                raise CompatibilityError(
                    "kind normalisation and the category title weight read first-stage cosines: not with "
                    "a reranker, labelled exemplars or an adapted index (use limits and thresholds only)"
                )
            if vectors is None:
                vectors = index.encode_products(products, cache_dir=cache_dir, show_progress=show_progress)
            if policy.title_weight > 0 and title_vectors is None:
                title_vectors = index.encoder.encode(title_texts(products, index.params.text))
                if index.fusion is not None:
                    title_vectors = index.fusion.fuse_products(products, title_vectors)
            rescored = rescore(policy, index.tags, index.tag_vectors_matrix, vectors, title_vectors)
            if rescored is not None and index.learned is not None:  # tags rejected for near-identical
                rescored.excluded = index.learned.suppressed(vectors)  # judged products stay out
        pool = max(top_k, min(policy.pool, len(index)))
        ranked = self.rank(
            products, pool, rerank, depth, vectors=vectors, cache_dir=cache_dir, show_progress=show_progress
        )
        return policy.select(ranked, by_id, top_k, rescored)

    def decide(
        self, ranked: Sequence[RankedCandidates], by_id: Mapping[str, Tag], rerank: bool = True
    ) -> list[list[Assigned]] | None:
        """Calibrated decisions per product (None when the calibration cannot read these scores)."""
        calibration = self.calibration
        if calibration is None or not self.can_decide(rerank):
            return None
        return assign(ranked, calibration, by_id, self.hierarchy)

    def probabilities(self, ranked: RankedCandidates, by_id: Mapping[str, Tag]) -> dict[str, float]:
        """Calibrated probability of every candidate the calibration can read, by tag id."""
        calibration = self.calibration
        if calibration is None:
            return {}
        pairs = scored_pairs(ranked, calibration.score)
        if not pairs:
            return {}
        levels = np.array([tag_level(t, by_id) for t, _ in pairs], dtype=np.int64)
        probs = calibration.probabilities(np.array([s for _, s in pairs]), levels)  # (n,)
        return {t: float(p) for (t, _), p in zip(pairs, probs.tolist(), strict=True)}

    @staticmethod
    def result(
        ranked: RankedCandidates,
        by_id: Mapping[str, Tag],
        threshold: float | None = None,
        include_ancestors: bool = False,
    ) -> TagResult:
        """Threshold -> ancestors: the run-file result of one product's ranked candidates."""
        kept = [(c.tag, c.score) for c in ranked.candidates if threshold is None or c.score >= threshold]
        rows = insert_ancestors(
            kept, lambda t: by_id[t].name if t in by_id else "", by_id if include_ancestors else None
        )
        return TagResult(ranked.id, rows)

    def tag(
        self,
        products: Sequence[Product],
        top_k: int = 10,
        threshold: float | None = None,
        include_ancestors: bool = False,
        decide: bool = False,
        rerank: bool = True,
        depth: int | None = None,
        vectors: np.ndarray | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        show_progress: bool = False,
        by_id: Mapping[str, Tag] | None = None,
        per_kind: KindPolicy | None = None,
    ) -> list[Tagged]:
        """Every stage for a batch of products, in input order.

        Args:
            products: Products to tag.
            top_k: Tags ranked per product.
            threshold: Drop ranked tags scoring below it (decisions read every candidate).
            include_ancestors: Insert each ranked tag's ancestors right after it.
            decide: Add the calibrated decision (needs a calibration that reads these scores).
            rerank: Use the reranker when one is configured.
            depth: Rerank depth (default: the pipeline's).
            vectors: Product vectors (n, dim) when already encoded.
            cache_dir: Product vector cache directory.
            show_progress: Show progress bars.
            by_id: The index's vocabulary when the caller holds it (else read from the index).
            per_kind: Per-kind limits, thresholds and rules (:class:`tagindex.kinds.KindPolicy`),
                applied to the ranked candidates before the threshold, ancestors and decisions.

        Raises:
            CompatibilityError: ``decide`` without a calibration that can read these scores, or a
                policy that rescores kinds on an index or stage whose scores are not cosines.
            InputError: The policy names kinds the vocabulary lacks.
        """
        if decide and not self.can_decide(rerank):
            raise CompatibilityError(
                "--decide needs --calibration (fit one with `tagindex calibrate`)"
                if self.calibration is None
                else "this calibration reads reranker scores: decide needs rerank"
            )
        if by_id is None:
            by_id = self.index.by_id
        if per_kind is None:
            ranked = self.rank(
                products,
                top_k,
                rerank,
                depth,
                vectors=vectors,
                cache_dir=cache_dir,
                show_progress=show_progress,
            )
        else:
            ranked = self.rank_kinds(
                per_kind, products, top_k, rerank, depth, vectors, cache_dir, show_progress, by_id
            )
        decisions = self.decide(ranked, by_id, rerank) if decide else None
        return [
            Tagged(
                self.result(r, by_id, threshold, include_ancestors),
                r,
                decisions[i] if decisions is not None else None,
            )
            for i, r in enumerate(ranked)
        ]
