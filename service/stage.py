"""The service's rerank, calibrated-decision and explanation stage: a thin adapter over the library's
:class:`tagindex.pipeline.TaggingPipeline`.

Everything here delegates to the pipeline (which ranks, reranks, decides and makes every
compatibility check) and :mod:`tagindex.explain`, as ``tagindex tag --reranker --calibration --decide``
and ``tagindex explain`` do; this module only loads the models once, turns the pipeline's refusals into
start-up errors, answers per request (rerank on or off, a bounded depth) and keeps concurrent requests
safe:

- the cross-encoder (a sentence-transformers ``CrossEncoder`` with a Rust tokenizer that must not be
  entered by two threads at once) is only called under one lock; the encoder goes through the
  engine's batcher as everywhere else in the service;
- index reads happen under the engine's read lock, taken once per call (never nested), so a tag
  added or retired over HTTP cannot change the vocabulary in the middle of a rerank.

The explainer (``tagindex``) and decider (``calibrated``) are named in :mod:`tagindex.registry`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tagindex.service.explanations import (
    ExplainContext,
    SimilarityExplainer,
    TagExplanation,
)

from tagindex.calibration import Assigned, Calibration, Hierarchy
from tagindex.candidates import Candidate, RankedCandidates, tag_level
from tagindex.errors import CompatibilityError, InputError
from tagindex.explain import Explainer, ExplainParams
from tagindex.interfaces import PairScorer, Reranker
from tagindex.kinds import KindPolicy
from tagindex.pipeline import TaggingPipeline, check_calibration, check_depth, load_reranker
from tagindex.schema import Product, TagResult, TagScore

logger = logging.getLogger(__name__)


class StageConfigError(CompatibilityError):
    """The configured reranker / calibration cannot serve this index (the service refuses to start)."""


class StageRequestError(InputError):
    """A request asks for something the configured stage cannot give (answered with 422)."""


@dataclass
class ScoredResult(TagResult):
    """A :class:`TagResult` with what the stage knows about each ranked tag.

    Attributes:
        candidates: Tag id -> the candidate with its bi-encoder score and reranker logit.
        probabilities: Tag id -> calibrated probability (candidates the calibration could read).
        assigned: The calibrated decision (None when no calibration applies to this request).
        ranked: The ranked candidates (before the threshold cut), for explanations.
        reranked: Whether the cross-encoder rescored this product's candidates.
    """

    candidates: dict[str, Candidate] = field(default_factory=dict)
    probabilities: dict[str, float] = field(default_factory=dict)
    assigned: list[Assigned] | None = None
    ranked: RankedCandidates | None = None
    reranked: bool = False


class RerankStage:
    """Loaded reranker and calibration for one engine, with per-request choices.

    Args:
        engine: The service engine (index, batcher, read lock).
        reranker: Cross-encoder, or None.
        calibration: Calibration, or None.
        default_depth: Rerank depth when a request names none (default: the reranker's).
        max_depth: Largest depth a request may ask for.
        hierarchy: Hierarchy mode of calibrated decisions.
        titles: Labelled product id -> title (for the nearest labelled products).
        explain_words: Important words shown per explained tag.
        calibration_source: How refusals name the calibration (its file).
    """

    def __init__(
        self,
        engine: Any,
        reranker: Reranker | None,
        calibration: Calibration | None,
        default_depth: int | None = None,
        max_depth: int = 100,
        hierarchy: Hierarchy = "close",
        titles: dict[str, str] | None = None,
        explain_words: int = 5,
        calibration_source: str = "the calibration",
    ) -> None:
        try:
            self.pipeline = TaggingPipeline(
                engine.index, reranker, calibration, default_depth, max_depth, hierarchy, calibration_source
            )
        except CompatibilityError as exc:
            raise StageConfigError(str(exc)) from None
        self.engine = engine
        self.reranker = reranker
        self.calibration = calibration
        self.default_depth = self.pipeline.depth
        self.max_depth = max_depth
        self.hierarchy = hierarchy
        self.explain_words = explain_words
        self._lock = threading.Lock()  # one cross-encoder call at a time (tokenizer, torch pool)
        self._seen_version = engine.version
        self._labelled, self._labelled_vectors = self._exemplars(titles or {})
        self._explainers: dict[bool, Explainer] = {}

    # ---- loading --------------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Any, engine: Any) -> RerankStage | None:
        """The stage the settings ask for (None when they name no reranker and no calibration).

        Raises:
            StageConfigError: A file cannot be read, or the reranker and calibration do not belong
                together (or to this index); the message says which and how to fix it.
        """
        if settings.reranker_dir is None and settings.calibration_file is None:
            preflight(settings)  # a depth without a reranker is refused
            return None
        reranker = None
        if settings.reranker_dir is not None:
            try:
                reranker = load_reranker(settings.reranker_dir)
            except (OSError, ValueError) as exc:  # IndexFormatError is a ValueError
                raise StageConfigError(f"cannot load the reranker {settings.reranker_dir}: {exc}") from None
        calibration = None
        if settings.calibration_file is not None:
            calibration = _load_calibration(settings.calibration_file)
        titles = _titles(settings.labelled_products) if settings.labelled_products else {}
        stage = cls(
            engine,
            reranker,
            calibration,
            settings.rerank_depth,
            settings.max_rerank_depth,
            settings.hierarchy,
            titles,
            settings.explain_words,
            str(settings.calibration_file),
        )
        if isinstance(reranker, PairScorer):  # the first forward pass is slow; pay it before serving
            reranker.score_pairs([("warm-up", "warm-up")])
        logger.info(
            "rerank stage: reranker %s (depth %s), calibration %s (%s scores), %d labelled exemplars",
            reranker.fingerprint if reranker else None,
            stage.default_depth,
            settings.calibration_file,
            calibration.score if calibration else None,
            len(stage._labelled),
        )
        return stage

    def describe(self) -> dict[str, Any]:
        return {
            "reranker": self.reranker.fingerprint if self.reranker else None,
            "fusion": isinstance(self.reranker, PairScorer)
            and self.reranker.fusion_for(self.engine.index) is not None,
            "rerank_depth": self.default_depth,
            "max_rerank_depth": self.max_depth,
            "calibration": self.calibration.score if self.calibration else None,
            "hierarchy": self.hierarchy,
            "labelled_exemplars": len(self._labelled),
        }

    # ---- requests -------------------------------------------------------------------------------
    def resolve(self, rerank: bool | None, depth: int | None) -> tuple[bool, int | None]:
        """(rerank?, depth) for a request; the default reranks whenever a reranker is configured.

        Raises:
            StageRequestError: Rerank asked for without a reranker, or the depth is out of bounds.
        """
        if depth is not None and rerank is None:
            rerank = True
        if rerank is None:
            rerank = self.reranker is not None
        if not rerank:
            if depth is not None:
                raise StageRequestError("rerank_depth needs rerank (it was set to false)")
            return False, None
        if self.reranker is None:
            raise StageRequestError(
                "rerank was asked for but no reranker is configured (TAGINDEX_RERANKER_DIR)"
            )
        depth = self.default_depth if depth is None else depth
        if depth is None or not 1 <= depth <= self.max_depth:
            raise StageRequestError(f"rerank_depth {depth} is outside 1..{self.max_depth}")
        return True, depth

    def can_decide(self, rerank: bool) -> bool:
        """Whether the calibration can read this request's scores."""
        return self.pipeline.can_decide(rerank)

    def rank(
        self,
        products: Sequence[Product],
        vectors: np.ndarray,
        top_k: int,
        rerank: bool,
        depth: int | None,
        threshold: float | None = None,
        include_ancestors: bool = False,
        per_kind: KindPolicy | None = None,
        title_vectors: np.ndarray | None = None,
    ) -> list[ScoredResult]:
        """Ranked (optionally reranked) tags of encoded products (vectors (n, dim)), with calibrated
        probabilities and decisions when the calibration applies; like ``tagindex tag --reranker
        --calibration --decide`` (same library calls)."""
        reranker = self.reranker if rerank else None
        pipeline = self.pipeline
        with self.engine.reading(), self._lock if reranker is not None else nullcontext():
            if reranker is not None:
                self._forget_stale_texts(reranker)
            if not len(pipeline.index):
                raise LookupError("the index holds no tags")
            by_id = self.engine.by_id
            if per_kind is None:
                ranked = pipeline.rank(products, top_k, rerank, depth, vectors=vectors)
            else:  # per-kind limits and rules (tagindex.kinds), as `tagindex tag --per-kind`
                ranked = pipeline.rank_kinds(
                    per_kind,
                    products,
                    top_k,
                    rerank,
                    depth,
                    vectors,
                    by_id=by_id,
                    title_vectors=title_vectors,
                )
            decisions = pipeline.decide(ranked, by_id, rerank)
            out = []
            for i, r in enumerate(ranked):
                base = pipeline.result(r, by_id, threshold, include_ancestors)
                out.append(
                    ScoredResult(
                        base.id,
                        base.tags,
                        candidates={c.tag: c for c in r.candidates},
                        probabilities=pipeline.probabilities(r, by_id) if decisions is not None else {},
                        assigned=decisions[i] if decisions is not None else None,
                        ranked=r,
                        reranked=reranker is not None,
                    )
                )
        return out

    def explain(
        self, product: Product, vector: np.ndarray, result: ScoredResult
    ) -> dict[str, dict[str, Any]]:
        """Library explanations (``Explainer.explain_ranked``) of the ranked (non-ancestor) tags of one
        product, keyed by tag id."""
        ranked = result.ranked or RankedCandidates(result.id, [])
        shown = [t.tag for t in result.tags if t.ancestor_of is None]
        assigned = {a.tag: a for a in result.assigned or []}
        explainer = self._explainer(result.reranked)
        with self.engine.reading(), self._lock if explainer.reranker is not None else nullcontext():
            if explainer.reranker is not None:
                self._forget_stale_texts(explainer.reranker)
            by_id = self.engine.by_id
            chosen = [
                assigned.get(t) or Assigned(t, result.probabilities.get(t, 0.0), tag_level(t, by_id))
                for t in shown
                if t in by_id
            ]
            record = explainer.explain_ranked(product, vector, ranked, chosen)
        return {item["tag"]: item for item in record["assigned"]}

    # ---- internals ------------------------------------------------------------------------------
    def _explainer(self, reranked: bool) -> Explainer:
        """The library explainer for reranked or plain requests (a plain request's explanation never
        calls the cross-encoder, and reads a calibration only when it is on bi-encoder scores)."""
        explainer = self._explainers.get(reranked)
        if explainer is None:
            calibration = self.calibration if self.can_decide(reranked) else None
            explainer = Explainer(
                self.engine.index,
                self.reranker if reranked else None,
                calibration,
                labelled=self._labelled,
                params=ExplainParams(words=self.explain_words, max_words=24, hierarchy=self.hierarchy),
                labelled_vectors=self._labelled_vectors,
                encode=self.engine.encode,
            )
            self._explainers[reranked] = explainer
        return explainer

    def _forget_stale_texts(self, reranker: Reranker) -> None:
        """Tag texts cached by the reranker are dropped once the vocabulary changed (caller holds the
        stage lock)."""
        if self.engine.version != self._seen_version:
            reranker.forget_tag_texts()
            self._seen_version = self.engine.version

    def _exemplars(self, titles: dict[str, str]) -> tuple[list[Product], np.ndarray | None]:
        """The index's exemplars as labelled products with their stored vectors (text part, unit rows),
        so explanations find the nearest labelled products without encoding anything."""
        index = self.engine.index
        scorer = index.scorer()
        if scorer is None or scorer.ex_vectors is None:  # exemplar codes keep no float32 vectors
            return [], None
        labels = [[scorer.targets[j] for j in row if j >= 0] for row in scorer.label_table]
        products = [
            Product(pid, titles.get(pid, ""), tags=tags)
            for pid, tags in zip(scorer.ex_ids, labels, strict=True)
        ]
        text = np.asarray(scorer.ex_vectors[:, : index.encoder.dim], dtype=np.float32)  # (m, dim)
        text /= np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
        return products, text


def preflight(settings: Any) -> None:
    """The checks :meth:`RerankStage.from_settings` makes, from the manifests alone (no model is loaded),
    so ``tagindex serve`` refuses a mismatched reranker or calibration with a one-line error.

    Raises:
        StageConfigError: As :meth:`RerankStage.from_settings`.
    """
    from tagindex.cross_encoder import KIND, RerankerParams, fingerprint
    from tagindex.store import read_manifest

    if settings.reranker_dir is None and settings.calibration_file is None:
        if settings.rerank_depth is not None:
            raise StageConfigError(
                "a rerank depth is set but no reranker (TAGINDEX_RERANKER_DIR / --reranker)"
            )
        return
    reranker_fp = None
    depth = settings.rerank_depth
    if settings.reranker_dir is not None:
        try:
            manifest = read_manifest(settings.reranker_dir, KIND, verify=True)
        except (OSError, ValueError) as exc:
            raise StageConfigError(f"cannot load the reranker {settings.reranker_dir}: {exc}") from None
        reranker_fp = fingerprint(manifest)
        if depth is None:
            depth = RerankerParams.from_dict(manifest.get("params", {})).depth
    try:
        check_depth(depth, settings.max_rerank_depth, settings.reranker_dir is not None)
        if settings.calibration_file is not None:
            from tagindex.index import read_saved_tags

            by_id = {t.id: t for t in read_saved_tags(settings.index_dir)}
            calibration = _load_calibration(settings.calibration_file)
            check_calibration(
                calibration,
                by_id,
                settings.reranker_dir is not None,
                reranker_fp,
                str(settings.calibration_file),
            )
    except CompatibilityError as exc:
        raise StageConfigError(str(exc)) from None


def _load_calibration(path: Path) -> Calibration:
    """Loads a calibration file (whether it fits the index and reranker is the pipeline's check)."""
    try:
        return Calibration.load(path)
    except ValueError as exc:
        raise StageConfigError(str(exc)) from None


def _titles(path: Path) -> dict[str, str]:
    from tagindex.io import load_products

    try:
        return {p.id: p.title for p in load_products(path)}
    except (OSError, ValueError) as exc:
        raise StageConfigError(f"cannot read the labelled products {path}: {exc}") from None


# ---- the explainer and decider, registered through the seam ---------------------------------------
class LibraryExplainer:
    """Explanations from :class:`tagindex.explain.Explainer`: score parts (bi-encoder, graph, reranker
    logit and probability, calibrated probability, rank), nearest labelled products carrying the tag
    (from the index's exemplars) and the product words that matter most (occlusion), plus the
    similarity explainer's shared words and closest alternative tags."""

    name = "tagindex"

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._similarity = SimilarityExplainer(engine)

    def explain(self, ctx: ExplainContext) -> dict[str, TagExplanation]:
        result = ctx.result
        stage: RerankStage | None = self.engine.stage
        if stage is None or not isinstance(result, ScoredResult):
            return self._similarity.explain(ctx)
        # Shared words and alternative tags are about the first stage: give it bi-encoder scores.
        bi_scores = {t: c.bi_score for t, c in result.candidates.items()}
        first_stage = TagResult(
            result.id,
            [
                TagScore(t.tag, bi_scores.get(t.ancestor_of or t.tag, t.score), t.name, t.ancestor_of)
                for t in result.tags
            ],
        )
        base = self._similarity.explain(ExplainContext(ctx.product, ctx.text, ctx.vector, first_stage))
        items = stage.explain(ctx.product, ctx.vector, result)
        assigned = {a.tag: a for a in result.assigned or []}
        for t in result.tags:
            explanation = base.get(t.tag)
            if explanation is None:
                continue
            item = items.get(t.tag)
            if item is not None:
                # The library's first-stage score keeps the seam's name; its 'score' is the hit's score.
                parts = {k: v for k, v in item["parts"].items() if k not in ("first_stage_score", "score")}
                explanation.parts = {
                    "bi_encoder_similarity": bi_scores.get(t.tag, t.score),
                    **{k: float(v) for k, v in parts.items() if v is not None},
                }
                explanation.words = item["words"]
                explanation.examples = item["neighbours"]
            elif t.tag in assigned:  # an ancestor row the decision assigned
                explanation.parts["calibrated_probability"] = assigned[t.tag].probability
        return base


class CalibratedDecider:
    """Accept exactly the tags the calibrated decision assigns (per-level thresholds for a target
    precision, hierarchy-consistent); every other tag goes to review."""

    name = "calibrated"
    needs_threshold = False

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def decide(self, result: TagResult, threshold: float | None) -> dict[str, tuple[str, str]]:
        stage: RerankStage | None = self.engine.stage
        if stage is None or stage.calibration is None:
            raise StageRequestError("the calibrated decider needs a calibration (TAGINDEX_CALIBRATION_FILE)")
        if not isinstance(result, ScoredResult) or result.assigned is None:
            raise StageRequestError("this calibration reads reranker scores: decide needs rerank")
        calibration = stage.calibration
        by_id = self.engine.by_id
        assigned = {a.tag: a for a in result.assigned}
        out: dict[str, tuple[str, str]] = {}
        for t in result.tags:
            if t.tag in out:
                continue
            level = tag_level(t.tag, by_id) if t.tag in by_id else 0
            thr = calibration.threshold(level)
            a = assigned.get(t.tag)
            if a is not None and a.ancestor_of is not None:
                out[t.tag] = ("accept", f"parent of assigned '{a.ancestor_of}' (p {a.probability:.3f})")
                continue
            if a is None and t.ancestor_of is not None:
                out[t.tag] = ("review", f"parent of '{t.ancestor_of}', which is not assigned")
                continue
            p = a.probability if a is not None else result.probabilities.get(t.tag)
            if p is None:
                out[t.tag] = ("review", "no calibrated probability (beyond the rerank depth)")
            elif thr is None:
                out[t.tag] = ("review", f"p {p:.3f}; level {level} has no threshold reaching the target")
            elif a is not None:
                out[t.tag] = ("accept", f"calibrated p {p:.3f} >= level-{level} threshold {thr:.3f}")
            elif p >= thr:  # 'prune' dropped it: its parent was not assigned
                out[t.tag] = ("review", f"p {p:.3f} >= threshold {thr:.3f} but its parent is not assigned")
            else:
                out[t.tag] = ("review", f"calibrated p {p:.3f} < level-{level} threshold {thr:.3f}")
        return out
