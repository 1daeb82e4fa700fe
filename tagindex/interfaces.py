"""The small interfaces behind tagindex's plug-in points (each kind has one registry in
:mod:`tagindex.registry`).

They are structural (``typing.Protocol``): an implementation needs no base class, only the members
listed. The encoder interface is the abstract base class :class:`tagindex.encoders.Encoder`, since
encoders share its ``fingerprint`` implementation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from tagindex.schema import Product, Tag, TagResult

if TYPE_CHECKING:
    from tagindex.candidates import RankedCandidates
    from tagindex.index import TagIndex


@runtime_checkable
class Reranker(Protocol):
    """Rescores the head of each product's candidate list (a second, slower, sharper stage).

    An implementation provides:

    - ``depth``: its default rerank depth (candidates rescored per product);
    - ``fingerprint``: an id of the saved model (a calibration fitted on its scores records it), or
      None for a reranker that was never saved;
    - ``rerank``: the same candidates, reordered and rescored (``rerank_score`` set in the head,
      nothing dropped or added);
    - ``mismatch``: why its fitted state cannot score this index's candidates (None when it can), so
      the pipeline refuses instead of silently ranking differently;
    - ``forget_tag_texts``: drop anything cached about the index's tags (they changed);
    - ``save`` and a ``load`` classmethod (registered in :data:`tagindex.registry.RERANKERS`): a
      directory whose ``manifest.json`` has kind ``tagindex-reranker``, its ``reranker_type`` (the
      registry name), ``params.depth`` and its model files under ``model/`` (the fingerprint is their
      checksums), so the service's preflight reads it without loading the model.
    """

    @property
    def depth(self) -> int: ...

    @property
    def fingerprint(self) -> str | None: ...

    def rerank(
        self,
        index: TagIndex,
        products: Sequence[Product],
        candidates: Sequence[TagResult] | Sequence[RankedCandidates],
        depth: int | None = None,
        show_progress: bool = False,
    ) -> list[RankedCandidates]: ...

    def mismatch(self, index: TagIndex) -> str | None: ...

    def forget_tag_texts(self) -> None: ...

    def save(self, path: str | os.PathLike[str]) -> None: ...


@runtime_checkable
class PairScorer(Protocol):
    """A reranker that scores (product text, tag text) pairs, as the cross-encoder does. Explanations
    then measure word importance with it and score tags outside the reranked head; a reranker that is
    not one is explained by the bi-encoder's word importance.

    An implementation provides the texts it reads, ``score_pairs`` (one logit per pair, shape (n,))
    and ``fusion_for`` (the score fusion it applies for an index, None when it ranks by the pair
    score alone).
    """

    def product_texts(self, products: Sequence[Product]) -> list[str]: ...

    def tag_texts(self, index: TagIndex, tag_ids: Sequence[str]) -> list[str]: ...

    def score_pairs(self, pairs: Sequence[tuple[str, str]], show_progress: bool = False) -> np.ndarray: ...

    def fusion_for(self, index: TagIndex) -> Any: ...


class RerankerType(Protocol):
    """What :data:`tagindex.registry.RERANKERS` holds: a class whose ``load`` reads a saved reranker."""

    @classmethod
    def load(cls, path: str | os.PathLike[str], verify: bool = True) -> Reranker: ...


class VectorFusion(Protocol):
    """Appends extra vector parts (e.g. graph vectors) to every tag and product vector of an index.

    An implementation provides ``type_name`` (its name in :data:`tagindex.registry.FUSIONS`, written to
    the index manifest so the index can load it again), ``dim`` (the appended dimension), the two
    ``fuse_*`` methods returning (n, text_dim + dim) vectors, ``describe`` (a manifest entry) and
    ``save``; the registered loader reads what ``save`` wrote.
    """

    type_name: str

    @property
    def dim(self) -> int: ...

    def fuse_tags(
        self, tags: Sequence[Tag], text_vectors: np.ndarray, by_id: Mapping[str, Tag]
    ) -> np.ndarray: ...

    def fuse_products(self, products: Sequence[Product], text_vectors: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...

    def save(self, directory: Path) -> None: ...


class FusionLoader(Protocol):
    """What :data:`tagindex.registry.FUSIONS` holds: reads a saved fusion directory."""

    def __call__(self, directory: str | os.PathLike[str], verify: bool = True) -> VectorFusion: ...


class Decider(Protocol):
    """Turns a product's ranked result into decisions: ``{tag id: ("accept" | "review", reason)}``.

    ``needs_threshold`` says whether ``decide`` requires the operator's similarity threshold (a
    calibrated decider carries its own per-level thresholds and ignores it). Registered in
    :data:`tagindex.registry.DECIDERS` as ``factory(engine) -> Decider``.
    """

    name: str
    needs_threshold: bool

    def decide(self, result: TagResult, threshold: float | None) -> dict[str, tuple[str, str]]: ...


class Explainer(Protocol):
    """Explains every tag of a product's result, keyed by tag id (``ctx`` is the service's
    ``ExplainContext``: product, encoder text, vector, result). Registered in
    :data:`tagindex.registry.EXPLAINERS` as ``factory(engine) -> Explainer``."""

    name: str

    def explain(self, ctx: Any) -> dict[str, Any]: ...
