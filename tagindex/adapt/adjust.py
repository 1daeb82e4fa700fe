"""The query-time part of an adapted index: hubness normalisation, hierarchy-aware decoding, the
product-type match of titles against tag names and the k-occurrence cap's per-tag penalties.

:class:`ScoreAdjuster` is saved under ``adapt/`` in the index directory (listed in the manifest and
its checksums) and applied by ``TagIndex.tag`` to every request, a single product included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file, save_file

from tagindex.adapt.hierarchy import leaves_mask, parent_rows, path_scores
from tagindex.adapt.lexical import TypeLexicon
from tagindex.schema import Tag
from tagindex.store import IndexFormatError

if TYPE_CHECKING:
    from scipy import sparse

_DIR = "adapt"
# Names lent to tags by an outside taxonomy (tagindex.adapt.graft); absent when nothing was grafted.
_GRAFT = "graft.json"
# describe() keys recomputed from the arrays and settings, not carried in ``info``.
_DERIVED = ("hierarchy_weight", "leaves_only", "n_tags", "penalised_tags", "lexical")


def read_graft(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The names lent by ``adapt --graft`` as :meth:`ScoreAdjuster.save` wrote them under an index
    version ``directory`` (names, rows, strength, sources when recorded); None when nothing was lent.

    Raises:
        IndexFormatError: The file is there but unreadable.
    """
    path = Path(directory) / _DIR / _GRAFT
    if not path.exists():
        return None
    try:
        graft: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: unreadable lent names: {exc}") from None
    return graft


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
        lexicon: Head nouns of the tag names (:class:`tagindex.adapt.lexical.TypeLexicon`); with
            ``lexical_weight`` > 0 each product's title match is added to its scores.
        lexical_weight: Weight of the title match, in units of the product's own score spread
            (standard deviation over the rankable tags), so it means the same for any encoder.
        lexical_other_word: Match strength of a tag head found elsewhere in the title's product phrase.
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
        lexicon: TypeLexicon | None = None,
        lexical_weight: float = 0.0,
        lexical_other_word: float = 0.25,
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
        if lexical_weight > 0 and (lexicon is None or lexicon.n_tags != len(bias)):
            raise ValueError("a lexical weight needs a lexicon of the same tags")
        self.lexicon = lexicon if lexical_weight > 0 else None
        self.lexical_weight = float(lexical_weight)
        self.lexical_other_word = float(lexical_other_word)

    @classmethod
    def for_tags(
        cls,
        tags: Sequence[Tag],
        bias: np.ndarray,
        scale: np.ndarray,
        hierarchy_weight: float,
        leaves_only: bool,
        info: dict[str, Any] | None = None,
        lexical_weight: float = 0.0,
        lexical_other_word: float = 0.25,
        lexical_generic_df: int = 5,
        lexicon: TypeLexicon | None = None,
    ) -> ScoreAdjuster:
        """An adjuster for ``tags``; ``lexicon`` (its settings are recorded with the index) saves
        rebuilding the tags' :class:`TypeLexicon`, else built with ``lexical_generic_df`` and the
        lexicon's other defaults."""
        if lexical_weight > 0 and lexicon is None:
            lexicon = TypeLexicon([t.name for t in tags], lexical_generic_df)
        info = {**(info or {}), "lexical_generic_df": lexical_generic_df}
        if lexicon is not None:
            info["lexical_missing_modifiers"] = lexicon.missing_modifiers
            info["lexical_unnamed_kind"] = lexicon.unnamed_kind
            info["lexical_category"] = lexicon.category
            info["lexical_category_attributes"] = list(lexicon.category_attributes)
        return cls(
            bias,
            scale,
            parent_rows(tags),
            hierarchy_weight,
            leaves_only,
            info,
            None,
            lexicon,
            lexical_weight,
            lexical_other_word,
        )

    def __len__(self) -> int:
        return len(self.bias)

    @property
    def rankable(self) -> np.ndarray:
        """Rows of the tags that :meth:`top` ranks (all, or the leaves with ``leaves_only``)."""
        return self._rankable if self._rankable is not None else np.arange(len(self))

    def match(self, titles: Sequence[str]) -> sparse.csr_matrix | None:
        """Title match strengths (n, tags) for :meth:`adjust`; None when the index does not use them."""
        if self.lexicon is None:
            return None
        return self.lexicon.scores(titles, self.lexical_other_word)

    def adjust(
        self, sims: np.ndarray, penalise: bool = True, lexical: sparse.csr_matrix | None = None
    ) -> np.ndarray:
        """Adapted scores (n, tags) from cosine similarities (n, tags).

        Args:
            sims: Cosine similarities.
            penalise: Subtract the k-occurrence cap's penalties (False: the scores the cap is fitted on).
            lexical: The products' :meth:`match` (required when the adjuster has a lexical weight).

        Raises:
            ValueError: The adjuster matches titles but ``lexical`` is missing or of another shape.
        """
        scores = path_scores((sims - self.bias) / self.scale, self.parents, self.hierarchy_weight)
        if self.lexicon is not None:
            scores = scores + self._lexical_part(scores, lexical)
        if penalise and self.penalty.any():
            scores = scores - self.penalty
        return scores

    def lexical_part(self, sims: np.ndarray, lexical: sparse.csr_matrix) -> np.ndarray | None:
        """What the title match adds to each adapted score (n, tags); None when the index has none.

        For explanations: :meth:`adjust` adds exactly this.
        """
        if self.lexicon is None:
            return None
        base = path_scores((sims - self.bias) / self.scale, self.parents, self.hierarchy_weight)
        return self._lexical_part(base, lexical)

    def _lexical_part(self, scores: np.ndarray, lexical: sparse.csr_matrix | None) -> np.ndarray:
        if lexical is None or lexical.shape != scores.shape:
            raise ValueError("this adapted index matches product titles: pass their match()")
        spread = scores[:, self.rankable].std(axis=1, keepdims=True)  # (n, 1)
        return self.lexical_weight * spread * lexical.toarray()

    def top(
        self, sims: np.ndarray, k: int, lexical: sparse.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` rankable tags per row: scores (n, k') and tag rows (n, k'), best first."""
        scores = self.adjust(sims, lexical=lexical)
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
            "lexical": {
                "weight": self.lexical_weight,
                "other_word": self.lexical_other_word,
                "grafted_names": len(self.lexicon.grafted_names) if self.lexicon is not None else 0,
            },
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
        if self.lexicon is not None and self.lexicon.grafted_names:
            lexicon = self.lexicon
            graft = {
                "names": lexicon.grafted_names,
                "rows": lexicon.grafted_rows,
                "strength": lexicon.graft_strength,
                **({"sources": lexicon.grafted_sources} if lexicon.grafted_sources else {}),
            }
            (out / _GRAFT).write_text(json.dumps(graft, ensure_ascii=False) + "\n")

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], n_tags: int, names: Sequence[str] | None = None
    ) -> ScoreAdjuster:
        """Reads what :meth:`save` wrote; ``n_tags`` must match the index's tag count.

        Adjusters saved before the k-occurrence cap existed have no ``penalty`` array: zeros; before
        the title match, no ``lexical`` entry: weight 0. The lexicon is rebuilt from the tag
        ``names`` (index row order), which a lexical weight requires.

        Raises:
            IndexFormatError: Files missing, unreadable or for another vocabulary size.
        """
        src = Path(directory) / _DIR
        try:
            arrays = load_file(str(src / "adjuster.safetensors"))
            info = json.loads((src / "adjuster.json").read_text())
            lexical = info.get("lexical") or {}
            weight = float(lexical.get("weight", 0.0))
            lexicon = None
            if weight > 0:
                if names is None or len(names) != n_tags:
                    raise ValueError("its title match needs the index's tag names")
                lexicon = TypeLexicon(
                    names,
                    int(info.get("lexical_generic_df", 5)),
                    # Indexes adapted before session 15 matched missing modifiers in full, and
                    # before session 16 unnamed kinds.
                    float(info.get("lexical_missing_modifiers", 1.0)),
                    float(info.get("lexical_unnamed_kind", 1.0)),
                    # and before session 17 read no category.
                    float(info.get("lexical_category", 0.0)),
                    [str(a) for a in info.get("lexical_category_attributes", [])],
                )
                graft = read_graft(directory)
                if graft is not None:
                    lexicon.graft(
                        graft["names"], graft["rows"], float(graft["strength"]), graft.get("sources")
                    )
            adjuster = cls(
                arrays["bias"],
                arrays["scale"],
                arrays["parents"],
                float(info.get("hierarchy_weight", 1.0)),
                bool(info.get("leaves_only", False)),
                {k: v for k, v in info.items() if k not in _DERIVED},
                arrays.get("penalty"),
                lexicon,
                weight,
                float(lexical.get("other_word", 0.25)),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexFormatError(f"{src}: unreadable score adjuster: {exc}") from None
        if len(adjuster) != n_tags:
            raise IndexFormatError(f"{src}: score adjuster covers {len(adjuster)} tags, the index {n_tags}")
        return adjuster
