"""The service's rerank, calibrated-decision and explanation stage, over tagindex's library stages.

Everything here delegates to the library (:mod:`tagindex.rerank`, :mod:`tagindex.calibrate`,
:mod:`tagindex.explain`), as ``tagindex tag --reranker --calibration --decide`` and ``tagindex explain``
do; this module only loads the models once, checks that they belong together, answers per request
(rerank on or off, a bounded depth) and keeps concurrent requests safe:

- the cross-encoder (a sentence-transformers ``CrossEncoder`` with a Rust tokenizer that must not be
  entered by two threads at once) is only called under one lock; the encoder goes through the
  engine's batcher as everywhere else in the service;
- index reads happen under the engine's read lock, taken once per call (never nested), so a tag
  added or retired over HTTP cannot change the vocabulary in the middle of a rerank.

The explainer (``tagindex``) and decider (``calibrated``) are registered through the seam in
:mod:`tagindex.service.explanations`.
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
    register_decider,
    register_explainer,
)

from tagindex.calibrate import Assigned, Calibration, Hierarchy, assign, scored_pairs, tag_level
from tagindex.errors import CompatibilityError, InputError
from tagindex.explain import Explainer, ExplainParams
from tagindex.rerank import Candidate, RankedCandidates, Reranker, index_key, rank_candidates, with_ancestors
from tagindex.schema import Product, TagResult, TagScore
from tagindex.text import ancestors

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
    ) -> None:
        depth = default_depth if default_depth is not None else (reranker.params.depth if reranker else None)
        _check_together(
            calibration, reranker is not None, reranker.fingerprint if reranker else None, depth, max_depth
        )
        self.engine = engine
        self.reranker = reranker
        self.calibration = calibration
        self.default_depth = depth
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
                reranker = Reranker.load(settings.reranker_dir)
            except (OSError, ValueError) as exc:  # IndexFormatError is a ValueError
                raise StageConfigError(f"cannot load the reranker {settings.reranker_dir}: {exc}") from None
            # Fusion weights are tied to the index they were fitted on (the key the library records);
            # the library would fall back to the cross-encoder alone, which a calibration fitted on
            # fused scores would misread: refuse instead.
            if reranker.info.get("fusion") and reranker.fusion_for(engine.index) is None:
                raise StageConfigError(
                    f"the reranker {settings.reranker_dir} fuses its scores with those of the index it was "
                    f"trained with ({reranker.info['fusion'].get('index_key')}), not this one "
                    f"({index_key(engine.index)}: another encoder or exemplar setting): serve that index "
                    "or train the reranker with --index on this one"
                )
        calibration = None
        if settings.calibration_file is not None:
            calibration = _load_calibration(settings.calibration_file, engine.by_id)
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
        )
        if reranker is not None:  # the first forward pass is slow; pay it before serving
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
            "fusion": bool(self.reranker and self.reranker.fusion_for(self.engine.index) is not None),
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
        return self.calibration is not None and (self.calibration.score == "bi_encoder" or rerank)

    def rank(
        self,
        products: Sequence[Product],
        vectors: np.ndarray,
        top_k: int,
        rerank: bool,
        depth: int | None,
        threshold: float | None = None,
        include_ancestors: bool = False,
    ) -> list[ScoredResult]:
        """Ranked (optionally reranked) tags of encoded products (vectors (n, dim)), with calibrated
        probabilities and decisions when the calibration applies; like ``tagindex tag --reranker
        --calibration --decide`` (same library calls)."""
        reranker = self.reranker if rerank else None
        calibration = self.calibration if self.can_decide(rerank) else None
        with self.engine.reading(), self._lock if reranker is not None else nullcontext():
            if reranker is not None:
                self._forget_stale_texts(reranker)
            index = self.engine.index
            if not len(index):
                raise LookupError("the index holds no tags")
            by_id = self.engine.by_id
            ranked = rank_candidates(index, products, top_k, reranker, depth, vectors=vectors)
            decisions = assign(ranked, calibration, by_id, self.hierarchy) if calibration else None
            out = []
            for i, r in enumerate(ranked):
                probs = self._probabilities(r, calibration, by_id) if calibration else {}
                kept = RankedCandidates(
                    r.id, [c for c in r.candidates if threshold is None or c.score >= threshold]
                )
                names = {t: by_id[t].name for c in kept.candidates for t in [c.tag, *ancestors(c.tag, by_id)]}
                base = with_ancestors(kept, by_id, names) if include_ancestors else kept.to_result(names)
                out.append(
                    ScoredResult(
                        base.id,
                        base.tags,
                        candidates={c.tag: c for c in r.candidates},
                        probabilities=probs,
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

    @staticmethod
    def _probabilities(
        r: RankedCandidates, calibration: Calibration, by_id: dict[str, Any]
    ) -> dict[str, float]:
        pairs = scored_pairs(r, calibration.score)
        if not pairs:
            return {}
        levels = np.array([tag_level(t, by_id) for t, _ in pairs], dtype=np.int64)
        probs = calibration.probabilities(np.array([s for _, s in pairs]), levels)  # (n,)
        return {t: float(p) for (t, _), p in zip(pairs, probs.tolist(), strict=True)}

    def _exemplars(self, titles: dict[str, str]) -> tuple[list[Product], np.ndarray | None]:
        """The index's exemplars as labelled products with their stored vectors (text part, unit rows),
        so explanations find the nearest labelled products without encoding anything."""
        index = self.engine.index
        scorer = index.scorer()
        if scorer is None:
            return [], None
        labels = [[scorer.targets[j] for j in row if j >= 0] for row in scorer.label_table]
        products = [
            Product(pid, titles.get(pid, ""), tags=tags)
            for pid, tags in zip(scorer.ex_ids, labels, strict=True)
        ]
        text = np.asarray(scorer.ex_vectors[:, : index.encoder.dim], dtype=np.float32)  # (m, dim)
        text /= np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
        return products, text


def _check_together(
    calibration: Calibration | None,
    has_reranker: bool,
    reranker_fingerprint: str | None,
    depth: int | None,
    max_depth: int,
) -> None:
    """Refuses a calibration fitted for another reranker (the fingerprint it records) and a depth out of
    bounds."""
    if calibration is not None and calibration.score == "rerank":
        if not has_reranker:
            raise StageConfigError(
                "the calibration was fitted on reranker scores: configure its reranker too "
                "(TAGINDEX_RERANKER_DIR / --reranker)"
            )
        if calibration.reranker != reranker_fingerprint:
            raise StageConfigError(
                f"the calibration was fitted for reranker {calibration.reranker}, but the configured "
                f"reranker is {reranker_fingerprint}: refit it with `tagindex calibrate --reranker DIR`"
            )
    if depth is not None and not 1 <= depth <= max_depth:
        raise StageConfigError(f"rerank depth {depth} is outside 1..{max_depth} (TAGINDEX_MAX_RERANK_DEPTH)")


def preflight(settings: Any) -> None:
    """The checks :meth:`RerankStage.from_settings` makes, from the manifests alone (no model is loaded),
    so ``tagindex serve`` refuses a mismatched reranker or calibration with a one-line error.

    Raises:
        StageConfigError: As :meth:`RerankStage.from_settings`.
    """
    from tagindex.rerank import KIND, RerankerParams, fingerprint
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
    calibration = None
    if settings.calibration_file is not None:
        from tagindex.index import read_saved_tags

        by_id = {t.id: t for t in read_saved_tags(settings.index_dir)}
        calibration = _load_calibration(settings.calibration_file, by_id)
    _check_together(
        calibration, settings.reranker_dir is not None, reranker_fp, depth, settings.max_rerank_depth
    )


def _load_calibration(path: Path, by_id: dict[str, Any]) -> Calibration:
    """Loads a calibration file and refuses one fitted on another vocabulary's hierarchy: it has
    thresholds for levels this index does not have, and would decide with maps for the wrong levels."""
    try:
        calibration = Calibration.load(path)
    except ValueError as exc:
        raise StageConfigError(str(exc)) from None
    index_levels = {str(tag_level(t, by_id)) for t in by_id}
    fitted = set(calibration.thresholds)
    if fitted and not fitted <= index_levels:
        raise StageConfigError(
            f"{path}: fitted for hierarchy levels {sorted(fitted)}, but this index has levels "
            f"{sorted(index_levels)}: it belongs to another vocabulary"
        )
    return calibration


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


register_explainer("tagindex", LibraryExplainer)
register_decider("calibrated", CalibratedDecider)
