"""The query-time part of an adapted index: hubness normalisation, hierarchy-aware decoding and the
k-occurrence cap's per-tag penalties.

:class:`ScoreAdjuster` is saved under ``adapt/`` in the index directory (listed in the manifest and
its checksums) and applied by ``TagIndex.tag`` to every request, a single product included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from tagindex.adapt.hierarchy import leaves_mask, parent_rows, path_scores
from tagindex.schema import Tag
from tagindex.store import IndexFormatError

_DIR = "adapt"
# describe() keys recomputed from the arrays and settings, not carried in ``info``.
_DERIVED = ("hierarchy_weight", "leaves_only", "n_tags", "penalised_tags")


class ScoreAdjuster:
    """Turns cosine similarities (n, tags) into adapted scores and ranks the tags.

    Args:
        bias: Per-tag value subtracted from the cosine (hubness).
        scale: Per-tag divisor after the subtraction (1 for CSLS).
        parents: Row of each tag's parent, -1 for roots.
        hierarchy_weight: Own-score weight of path aggregation (1.0: no aggregation).
        leaves_only: Rank only tags without children.
        penalty: Per-tag value subtracted from the final (path-aggregated) score: the k-occurrence
            cap (:func:`tagindex.adapt.hubness.fit_occurrence_cap`); zeros when absent.
        info: JSON-ready description (method, fitted on how many products) kept in the manifest.
    """

    def __init__(
        self,
        bias: np.ndarray,
        scale: np.ndarray,
        parents: np.ndarray,
        hierarchy_weight: float = 1.0,
        leaves_only: bool = False,
        info: dict[str, Any] | None = None,
        penalty: np.ndarray | None = None,
    ) -> None:
        if penalty is None:
            penalty = np.zeros(len(bias), dtype=np.float32)
        if not (len(bias) == len(scale) == len(parents) == len(penalty)):
            raise ValueError("bias, scale, parents and penalty must have one entry per tag")
        self.bias = np.asarray(bias, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)
        self.parents = np.asarray(parents, dtype=np.int64)
        self.hierarchy_weight = float(hierarchy_weight)
        self.leaves_only = bool(leaves_only)
        self.penalty = np.asarray(penalty, dtype=np.float32)
        self.info = dict(info or {})
        self._rankable = np.flatnonzero(leaves_mask(self.parents)) if leaves_only else None

    @classmethod
    def for_tags(
        cls,
        tags: Sequence[Tag],
        bias: np.ndarray,
        scale: np.ndarray,
        hierarchy_weight: float,
        leaves_only: bool,
        info: dict[str, Any] | None = None,
    ) -> ScoreAdjuster:
        return cls(bias, scale, parent_rows(tags), hierarchy_weight, leaves_only, info)

    def __len__(self) -> int:
        return len(self.bias)

    @property
    def rankable(self) -> np.ndarray:
        """Rows of the tags that :meth:`top` ranks (all, or the leaves with ``leaves_only``)."""
        return self._rankable if self._rankable is not None else np.arange(len(self))

    def adjust(self, sims: np.ndarray, penalise: bool = True) -> np.ndarray:
        """Adapted scores (n, tags) from cosine similarities (n, tags).

        Args:
            sims: Cosine similarities.
            penalise: Subtract the k-occurrence cap's penalties (False: the scores the cap is fitted on).
        """
        scores = path_scores((sims - self.bias) / self.scale, self.parents, self.hierarchy_weight)
        if penalise and self.penalty.any():
            scores = scores - self.penalty
        return scores

    def top(self, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` rankable tags per row: scores (n, k') and tag rows (n, k'), best first."""
        scores = self.adjust(sims)
        rows = self._rankable
        if rows is not None:
            scores = scores[:, rows]
        k = min(k, scores.shape[1])
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else None
        cand = part if part is not None else np.tile(np.arange(scores.shape[1]), (len(scores), 1))
        cand_scores = np.take_along_axis(scores, cand, axis=1)
        order = np.argsort(-cand_scores, axis=1, kind="stable")
        best = np.take_along_axis(cand, order, axis=1)
        best_scores = np.take_along_axis(cand_scores, order, axis=1)
        return best_scores, (rows[best] if rows is not None else best)

    def describe(self) -> dict[str, Any]:
        return {
            **self.info,
            "hierarchy_weight": self.hierarchy_weight,
            "leaves_only": self.leaves_only,
            "n_tags": len(self),
            "penalised_tags": int((self.penalty != 0).sum()),
        }

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Writes ``adapt/adjuster.safetensors`` and ``adapt/adjuster.json`` under ``directory``."""
        out = Path(directory) / _DIR
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {"bias": self.bias, "scale": self.scale, "parents": self.parents, "penalty": self.penalty},
            str(out / "adjuster.safetensors"),
        )
        (out / "adjuster.json").write_text(json.dumps(self.describe(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike[str], n_tags: int) -> ScoreAdjuster:
        """Reads what :meth:`save` wrote; ``n_tags`` must match the index's tag count.

        Adjusters saved before the k-occurrence cap existed have no ``penalty`` array: zeros.

        Raises:
            IndexFormatError: Files missing, unreadable or for another vocabulary size.
        """
        src = Path(directory) / _DIR
        try:
            arrays = load_file(str(src / "adjuster.safetensors"))
            info = json.loads((src / "adjuster.json").read_text())
            adjuster = cls(
                arrays["bias"],
                arrays["scale"],
                arrays["parents"],
                float(info.get("hierarchy_weight", 1.0)),
                bool(info.get("leaves_only", False)),
                {k: v for k, v in info.items() if k not in _DERIVED},
                arrays.get("penalty"),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise IndexFormatError(f"{src}: unreadable score adjuster: {exc}") from None
        if len(adjuster) != n_tags:
            raise IndexFormatError(f"{src}: score adjuster covers {len(adjuster)} tags, the index {n_tags}")
        return adjuster
