"""The query-time part of an adapted index: hubness normalisation and hierarchy-aware decoding.

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


class ScoreAdjuster:
    """Turns cosine similarities (n, tags) into adapted scores and ranks the tags.

    Args:
        bias: Per-tag value subtracted from the cosine (hubness).
        scale: Per-tag divisor after the subtraction (1 for CSLS).
        parents: Row of each tag's parent, -1 for roots.
        hierarchy_weight: Own-score weight of path aggregation (1.0: no aggregation).
        leaves_only: Rank only tags without children.
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
    ) -> None:
        if not (len(bias) == len(scale) == len(parents)):
            raise ValueError("bias, scale and parents must have one entry per tag")
        self.bias = np.asarray(bias, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)
        self.parents = np.asarray(parents, dtype=np.int64)
        self.hierarchy_weight = float(hierarchy_weight)
        self.leaves_only = bool(leaves_only)
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

    def adjust(self, sims: np.ndarray) -> np.ndarray:
        """Adapted scores (n, tags) from cosine similarities (n, tags)."""
        scores = (sims - self.bias) / self.scale
        return path_scores(scores, self.parents, self.hierarchy_weight)

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
        }

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Writes ``adapt/adjuster.safetensors`` and ``adapt/adjuster.json`` under ``directory``."""
        out = Path(directory) / _DIR
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {"bias": self.bias, "scale": self.scale, "parents": self.parents},
            str(out / "adjuster.safetensors"),
        )
        (out / "adjuster.json").write_text(json.dumps(self.describe(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike[str], n_tags: int) -> ScoreAdjuster:
        """Reads what :meth:`save` wrote; ``n_tags`` must match the index's tag count.

        Raises:
            IndexFormatError: Files missing, unreadable or for another vocabulary size.
        """
        src = Path(directory) / _DIR
        try:
            arrays = load_file(str(src / "adjuster.safetensors"))
            info = json.loads((src / "adjuster.json").read_text())
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{src}: unreadable score adjuster: {exc}") from None
        adjuster = cls(
            arrays["bias"],
            arrays["scale"],
            arrays["parents"],
            float(info.get("hierarchy_weight", 1.0)),
            bool(info.get("leaves_only", False)),
            {k: v for k, v in info.items() if k not in ("hierarchy_weight", "leaves_only", "n_tags")},
        )
        if len(adjuster) != n_tags:
            raise IndexFormatError(f"{src}: score adjuster covers {len(adjuster)} tags, the index {n_tags}")
        return adjuster
