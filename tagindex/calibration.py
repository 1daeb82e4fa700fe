"""Calibrated multi-label decisions: scores -> probabilities -> per-level thresholds -> assigned tags.

A ranking says which tags fit best; a decision says which to assign. Scores (reranker logits or
bi-encoder cosines) become probabilities with isotonic regression (pool-adjacent-violators) or Platt
scaling, fitted per hierarchy level on a dev split of labelled products the scorer never trained on.
Per level, the lowest threshold whose dev precision reaches the target is kept. Decisions are
hierarchy-consistent: by default an assigned tag brings its ancestors (``close``); ``prune`` drops
tags whose parent was not assigned; ``none`` leaves the hierarchy alone.

This module holds the calibration itself (what a :class:`tagindex.pipeline.TaggingPipeline` decides
with); fitting one on labelled products through the pipeline is :mod:`tagindex.calibrate`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tagindex.candidates import tag_level
from tagindex.config import _Params
from tagindex.schema import Tag
from tagindex.text import ancestors
from tagindex.version import __version__

logger = logging.getLogger(__name__)

KIND = "tagindex-calibration"
FORMAT_VERSION = 1
Hierarchy = Literal["close", "prune", "none"]


@dataclass
class CalibrationParams(_Params):
    """How probabilities and thresholds are fitted.

    Attributes:
        method: ``isotonic`` (monotone step function) or ``platt`` (logistic in the score).
        target_precision: Precision each level's threshold must reach on the dev split.
        min_samples: Fewer dev candidates (or a single class) at a level -> use the all-level fit.
        min_positives: Positives a threshold's accepted set must hold to be trusted.
        bins: Bins of the expected calibration error.
    """

    method: Literal["isotonic", "platt"] = "isotonic"
    target_precision: float = 0.9
    min_samples: int = 50
    min_positives: int = 10
    bins: int = 15


# ---- one-dimensional calibrators -------------------------------------------------------------------
@dataclass
class Isotonic:
    """Non-decreasing map from score to probability, linear between fitted knots."""

    x: list[float]
    y: list[float]

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray) -> Isotonic:
        """Pool-adjacent-violators on scores sorted ascending (ties pooled first)."""
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        order = np.lexsort((labels, scores))
        s, y = scores[order], labels[order]
        uniq, start = np.unique(s, return_index=True)
        counts = np.diff(np.append(start, len(s)))
        sums = np.add.reduceat(y, start)
        # blocks: [value sum, weight, min score, max score]
        blocks: list[list[float]] = []
        for u, c, total in zip(uniq.tolist(), counts.tolist(), sums.tolist(), strict=True):
            blocks.append([total, float(c), u, u])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
                last = blocks.pop()
                blocks[-1][0] += last[0]
                blocks[-1][1] += last[1]
                blocks[-1][3] = last[3]
        xs: list[float] = []
        ys: list[float] = []
        for total, weight, lo, hi in blocks:
            value = total / weight
            xs.append(lo)
            ys.append(value)
            if hi > lo:
                xs.append(hi)
                ys.append(value)
        return cls(xs, ys)

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "x": self.x, "y": self.y}


@dataclass
class Platt:
    """p = sigmoid(a * score + b), fitted by Newton steps on the log loss with Platt's smoothed targets."""

    a: float
    b: float

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> Platt:
        x = np.asarray(scores, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
        t = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        a, b = 1.0, 0.0
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-(a * x + b)))
            w = p * (1 - p) + 1e-12
            g = np.array([np.sum((p - t) * x), np.sum(p - t)])
            h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]) + 1e-9 * np.eye(2)
            step = np.linalg.solve(h, g)
            a, b = a - step[0], b - step[1]
            if np.abs(step).max() < 1e-10:
                break
        return cls(float(a), float(b))

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(scores, dtype=np.float64) + self.b)))

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "a": self.a, "b": self.b}


Calibrator = Isotonic | Platt


def _calibrator_from_dict(data: Mapping[str, Any]) -> Calibrator:
    if data.get("method") == "isotonic":
        return Isotonic([float(v) for v in data["x"]], [float(v) for v in data["y"]])
    if data.get("method") == "platt":
        return Platt(float(data["a"]), float(data["b"]))
    raise ValueError(f"unknown calibrator method {data.get('method')!r}")


def _fit(method: str, scores: np.ndarray, labels: np.ndarray) -> Calibrator:
    if method == "isotonic":
        return Isotonic.fit(scores, labels)
    if method == "platt":
        return Platt.fit(scores, labels)
    raise ValueError(f"unknown calibration method '{method}' (isotonic or platt)")


# ---- metrics ------------------------------------------------------------------------------------
def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: |accuracy - confidence| averaged over equal-width probability bins, weighted by size."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if len(probs) == 0:
        return float("nan")
    which = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(labels[mask].mean() - probs[mask].mean())
    return float(total / len(probs))


def precision_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Selective prediction curve: answer the most confident first.

    Returns:
        coverage (n,) and precision (n,) after answering the 1..n most confident items.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    answered = np.arange(1, len(order) + 1)
    return answered / len(order), hits / answered


def precision_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Precision of the ``coverage`` share of items with the highest confidence."""
    if len(confidence) == 0:
        return float("nan")
    cov, prec = precision_coverage(confidence, correct)
    i = int(np.searchsorted(cov, coverage - 1e-12))
    return float(prec[min(i, len(prec) - 1)])


def _threshold_for_precision(
    probs: np.ndarray, labels: np.ndarray, target: float, min_positives: int
) -> float | None:
    """Lowest threshold whose accepted set (p >= t) has precision >= target; None if none does."""
    order = np.argsort(-probs, kind="stable")
    p, y = probs[order], labels[order]
    hits = np.cumsum(y)
    prec = hits / np.arange(1, len(y) + 1)
    best: float | None = None
    for i in range(len(p)):
        # only cut between distinct probabilities: equal ones are accepted or refused together
        if i + 1 < len(p) and p[i + 1] == p[i]:
            continue
        if prec[i] >= target and hits[i] >= min_positives:
            best = float(p[i])
    return best


# ---- the fitted calibration -----------------------------------------------------------------------
@dataclass
class Assigned:
    """A tag the decision assigns, with its calibrated probability.

    Attributes:
        tag: Tag id.
        probability: Calibrated probability (for an ancestor added by ``close``: its own or its
            assigned descendant's, whichever is higher).
        level: Depth in the hierarchy (0 = root).
        ancestor_of: Set when the tag was assigned only because a descendant was.
    """

    tag: str
    probability: float
    level: int
    ancestor_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": self.tag,
            "probability": round(self.probability, 6),
            "level": self.level,
        }
        if self.ancestor_of is not None:
            out["ancestor_of"] = self.ancestor_of
        return out


@dataclass
class Calibration:
    """Per-level score -> probability maps and thresholds.

    Attributes:
        score: Which score the maps read: ``rerank`` (cross-encoder logit) or ``bi_encoder`` (cosine).
        params: Fitting settings.
        levels: Level (as a string, JSON keys) -> calibrator.
        fallback: All-levels calibrator for levels with too little dev data.
        thresholds: Level -> probability threshold (None: that level is never assigned).
        depth: Rerank depth (or bi-encoder top-k) of the dev candidates.
        reranker: Fingerprint of the reranker the scores came from.
        report: What the fit saw (counts, dev ECE).
    """

    score: Literal["rerank", "bi_encoder"]
    params: CalibrationParams = field(default_factory=CalibrationParams)
    levels: dict[str, Calibrator] = field(default_factory=dict)
    fallback: Calibrator | None = None
    thresholds: dict[str, float | None] = field(default_factory=dict)
    depth: int = 0
    reranker: str | None = None
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        scores: np.ndarray,
        labels: np.ndarray,
        levels: np.ndarray,
        score: Literal["rerank", "bi_encoder"],
        params: CalibrationParams | None = None,
        depth: int = 0,
        reranker: str | None = None,
    ) -> Calibration:
        """Fits the maps and thresholds on dev candidates.

        Args:
            scores: (n,) candidate scores.
            labels: (n,) 1 when the candidate is a correct tag of its product, else 0.
            levels: (n,) hierarchy level of each candidate.
            score: Which score ``scores`` holds.
            params: Fitting settings.
            depth: Candidates per product the scores were taken from (recorded).
            reranker: Fingerprint of the reranker (recorded and checked at use).
        """
        params = params or CalibrationParams()
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        levels = np.asarray(levels, dtype=np.int64)
        if len(scores) == 0 or labels.min() == labels.max():
            raise ValueError("calibration needs dev candidates with both correct and wrong tags")
        cal = cls(score=score, params=params, depth=depth, reranker=reranker)
        cal.fallback = _fit(params.method, scores, labels)
        report: dict[str, Any] = {"candidates": len(scores), "positives": int(labels.sum()), "levels": {}}
        for level in sorted(set(levels.tolist())):
            mask = levels == level
            y = labels[mask]
            key = str(level)
            if mask.sum() >= params.min_samples and 0 < y.sum() < len(y):
                cal.levels[key] = _fit(params.method, scores[mask], y)
            probs = cal.probabilities(scores[mask], levels[mask])
            cal.thresholds[key] = _threshold_for_precision(
                probs, y, params.target_precision, params.min_positives
            )
            report["levels"][key] = {
                "candidates": int(mask.sum()),
                "positives": int(y.sum()),
                "own_fit": key in cal.levels,
                "dev_ece": round(expected_calibration_error(probs, y, params.bins), 5),
                "threshold": cal.thresholds[key],
            }
        report["dev_ece"] = round(
            expected_calibration_error(cal.probabilities(scores, levels), labels, params.bins), 5
        )
        cal.report = report
        return cal

    def probabilities(self, scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n,) for scores at the given levels."""
        scores = np.asarray(scores, dtype=np.float64)
        levels = np.asarray(levels, dtype=np.int64)
        out = np.zeros(len(scores), dtype=np.float64)
        for level in set(levels.tolist()):
            mask = levels == level
            cal = self.levels.get(str(level), self.fallback)
            if cal is None:
                raise ValueError("calibration holds no fitted map")
            out[mask] = cal.predict(scores[mask])
        return np.clip(out, 0.0, 1.0)

    def threshold(self, level: int) -> float | None:
        key = str(level)
        if key in self.thresholds:
            return self.thresholds[key]
        # an unseen (deeper) level: the strictest known threshold, or never
        known = [t for t in self.thresholds.values() if t is not None]
        return max(known) if known else None

    def decide(
        self,
        candidates: Sequence[tuple[str, float]],
        by_id: Mapping[str, Tag],
        hierarchy: Hierarchy = "close",
    ) -> list[Assigned]:
        """Assigned tags for one product from its scored candidates.

        Args:
            candidates: (tag id, score) pairs, the score being of this calibration's kind.
            by_id: The vocabulary (for levels and parents).
            hierarchy: ``close`` adds ancestors of assigned tags, ``prune`` drops tags whose parent is
                not assigned, ``none`` leaves the hierarchy alone.

        Returns:
            Assigned tags, parents before children, then by probability.
        """
        if not candidates:
            return []
        ids = [c[0] for c in candidates]
        levels = np.array([tag_level(t, by_id) for t in ids], dtype=np.int64)
        probs = self.probabilities(np.array([c[1] for c in candidates]), levels)
        prob_of: dict[str, float] = {}
        for t, p in zip(ids, probs.tolist(), strict=True):
            prob_of[t] = max(p, prob_of.get(t, 0.0))
        chosen: dict[str, Assigned] = {}
        for t, p, level in zip(ids, probs.tolist(), levels.tolist(), strict=True):
            thr = self.threshold(level)
            if thr is not None and p >= thr and t not in chosen:
                chosen[t] = Assigned(t, p, level)
        if hierarchy == "close":
            for a in sorted(chosen.values(), key=lambda a: (-a.probability, a.tag)):
                for anc in ancestors(a.tag, by_id):
                    if anc in chosen:
                        if chosen[anc].ancestor_of is not None or chosen[anc].probability >= a.probability:
                            continue
                        chosen[anc] = Assigned(anc, a.probability, chosen[anc].level)
                    else:
                        p = max(prob_of.get(anc, 0.0), a.probability)
                        chosen[anc] = Assigned(anc, p, tag_level(anc, by_id), ancestor_of=a.tag)
        elif hierarchy == "prune":
            for t in sorted(chosen, key=lambda t: chosen[t].level):
                parent = by_id[t].parent if t in by_id else None
                if parent is not None and parent not in chosen:
                    del chosen[t]
        elif hierarchy != "none":
            raise ValueError(f"unknown hierarchy mode '{hierarchy}' (close, prune or none)")
        return sorted(chosen.values(), key=lambda a: (a.level, -a.probability, a.tag))

    # ---- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "tagindex_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "score": self.score,
            "params": self.params.to_dict(),
            "levels": {k: v.to_dict() for k, v in self.levels.items()},
            "fallback": self.fallback.to_dict() if self.fallback is not None else None,
            "thresholds": self.thresholds,
            "depth": self.depth,
            "reranker": self.reranker,
            "report": self.report,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        if data.get("kind") != KIND:
            raise ValueError(f"not a tagindex calibration (kind {data.get('kind')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"calibration format {data.get('format_version')} is not supported")
        score = data.get("score")
        if score not in ("rerank", "bi_encoder"):
            raise ValueError(f"calibration score kind {score!r} is unknown")
        return cls(
            score=score,
            params=CalibrationParams.from_dict(data.get("params", {})),
            levels={k: _calibrator_from_dict(v) for k, v in data.get("levels", {}).items()},
            fallback=_calibrator_from_dict(data["fallback"]) if data.get("fallback") else None,
            thresholds={k: (None if v is None else float(v)) for k, v in data.get("thresholds", {}).items()},
            depth=int(data.get("depth", 0)),
            reranker=data.get("reranker"),
            report=dict(data.get("report", {})),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read calibration: {exc}") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid calibration: {exc}") from None
