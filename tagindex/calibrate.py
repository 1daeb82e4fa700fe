"""Fitting a calibration (:mod:`tagindex.calibration`) on labelled dev products ranked by the pipeline.

The calibration's names (``Calibration``, ``CalibrationParams``, ``Assigned``, ``assign``, ...) stay
importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from tagindex.calibration import (
    FORMAT_VERSION,
    KIND,
    Assigned,
    Calibration,
    CalibrationParams,
    Calibrator,
    Hierarchy,
    Isotonic,
    Platt,
    expected_calibration_error,
    precision_at_coverage,
    precision_coverage,
)
from tagindex.candidates import assign, positives_of, scored_pairs, tag_level
from tagindex.pipeline import TaggingPipeline
from tagindex.schema import Product, Tag

__all__ = [
    "FORMAT_VERSION",
    "KIND",
    "Assigned",
    "Calibration",
    "CalibrationParams",
    "Calibrator",
    "Hierarchy",
    "Isotonic",
    "Platt",
    "assign",
    "calibration_products",
    "dev_candidates",
    "expected_calibration_error",
    "fit_calibration",
    "precision_at_coverage",
    "precision_coverage",
    "scored_pairs",
    "tag_level",
]


def dev_candidates(
    ranked: Sequence[Any],
    products: Sequence[Product],
    by_id: Mapping[str, Tag],
    score: Literal["rerank", "bi_encoder"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, labels, levels) of every scored candidate of labelled products.

    With ``score="rerank"`` only the candidates the reranker scored count.
    """
    scores: list[float] = []
    labels: list[float] = []
    levels: list[int] = []
    for product, r in zip(products, ranked, strict=True):
        pos = positives_of(product, dict(by_id))
        for c in r.candidates:
            value = c.rerank_score if score == "rerank" else c.bi_score
            if value is None:
                continue
            scores.append(value)
            labels.append(1.0 if c.tag in pos else 0.0)
            levels.append(tag_level(c.tag, by_id))
    return np.array(scores), np.array(labels), np.array(levels, dtype=np.int64)


def calibration_products(
    products: Sequence[Product], dev_ids: Sequence[str], dev_fraction: float, seed: int
) -> list[Product]:
    """The products to fit a calibration on: the reranker's held-out dev ids when known, else a
    seeded dev share of ``products`` (never products a scorer trained on).

    Raises:
        ValueError: The reranker names dev ids but none is in ``products``.
    """
    from tagindex.rerank_training import split_dev

    labelled = [p for p in products if p.tags]
    if dev_ids:
        wanted = set(dev_ids)
        dev = [p for p in labelled if p.id in wanted]
        if not dev:
            raise ValueError(
                "none of the reranker's dev products is in the products file: "
                "pass the labelled file the reranker was trained on"
            )
        return dev
    return split_dev(labelled, dev_fraction, seed)[1]


def fit_calibration(
    index: Any,
    products: Sequence[Product],
    reranker: Any = None,
    depth: int = 20,
    params: CalibrationParams | None = None,
    show_progress: bool = False,
) -> Calibration:
    """Ranks ``products`` (labelled dev products) and fits a calibration on their candidates.

    Args:
        index: The TagIndex.
        products: Labelled products the scorer never trained on.
        reranker: Optional Reranker; with it, reranker logits of the first ``depth`` candidates are
            calibrated, without it bi-encoder cosines of the first ``depth`` candidates.
        depth: Candidates per product.
        params: Fitting settings.
        show_progress: Show progress bars.
    """
    pipeline = TaggingPipeline(index, reranker, depth=depth if reranker is not None else None)
    ranked = pipeline.rank(products, depth, show_progress=show_progress, leave_one_out=True)
    score: Literal["rerank", "bi_encoder"] = "rerank" if reranker is not None else "bi_encoder"
    scores, labels, levels = dev_candidates(ranked, products, index.by_id, score)
    cal = Calibration.fit(
        scores,
        labels,
        levels,
        score,
        params,
        depth=depth,
        reranker=reranker.fingerprint if reranker is not None else None,
    )
    cal.report["products"] = len(products)
    return cal
