"""The cross-encoder reranker: rescores (product, tag) pairs of the bi-encoder's first candidates.

The bi-encoder (``TagIndex``) reads product and tag separately; the cross-encoder reads them together,
which is slower but sharper, so it only rescores the first ``depth`` candidates. A rerank never drops
or invents a candidate: it only reorders and rescores the head of the list it is given. Training is in
:mod:`tagindex.rerank_training`; the pipeline that calls a reranker in :mod:`tagindex.pipeline`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tagindex.candidates import Candidate, RankedCandidates, from_bi_encoder, scaled_tail, sigmoid
from tagindex.config import (
    ATTRIBUTE_LABELS,
    DEFAULT_MODEL,
    TextParams,
    _Params,
    check_attribute_labels,
    with_legacy_attribute_labels,
)
from tagindex.encoders import resolve_model_path
from tagindex.schema import Product, TagResult
from tagindex.store import atomic_directory, library_versions, read_manifest, write_manifest
from tagindex.text import product_text, tag_text
from tagindex.version import __version__

if TYPE_CHECKING:
    from tagindex.index import TagIndex

logger = logging.getLogger(__name__)

KIND = "tagindex-reranker"
FORMAT_VERSION = 1
TYPE_NAME = "cross-encoder"  # its name in tagindex.registry.RERANKERS


@dataclass
class RerankerParams(_Params):
    """Cross-encoder model, inference and training settings (stored in the reranker's manifest).

    Attributes:
        model: Initial checkpoint for training (a sentence-transformers or HF model directory).
        max_length: Token budget of one (product, tag) pair.
        batch_size: Pairs per inference batch.
        depth: Default rerank depth K (candidates rescored per product).
        description_chars: Product description characters the cross-encoder reads (fewer than the
            bi-encoder's: every (product, tag) pair pays for them again).
        attribute_labels: How attribute names are shown (:class:`tagindex.config.TextParams`);
            rerankers saved before session 18 read {}.
        epochs: Training epochs; with more than one, the epoch with the lowest dev loss is kept.
        learning_rate: AdamW learning rate.
        train_batch_size: Pairs per training step.
        warmup_ratio: Share of steps with a linear learning-rate warm-up.
        candidate_k: Bi-encoder candidates per product that hard negatives are drawn from.
        hard_negatives: Hard negatives per training product.
        random_negatives: Random (easy) negatives per training product.
        max_products: Cap on training products (seeded sample); None uses all.
        dev_fraction: Share of the labelled products held out as the dev split.
        dev_eval_products: Dev products reranked after training: the report and the fusion fit.
        seed: Seed for the split, the negative sampling and the classifier initialisation.
    """

    model: str = DEFAULT_MODEL
    max_length: int = 128
    batch_size: int = 64
    depth: int = 20
    description_chars: int = 80
    attribute_labels: dict[str, str] = field(default_factory=lambda: dict(ATTRIBUTE_LABELS))
    epochs: int = 1
    learning_rate: float = 6e-5
    train_batch_size: int = 16
    warmup_ratio: float = 0.1
    candidate_k: int = 20
    hard_negatives: int = 4
    random_negatives: int = 1
    max_products: int | None = 2000
    dev_fraction: float = 0.1
    dev_eval_products: int = 300  # also fit the fusion with the bi-encoder score
    seed: int = 13

    def __post_init__(self) -> None:
        check_attribute_labels(self.attribute_labels, "reranker attribute_labels")

    @classmethod
    def fast(cls) -> RerankerParams:
        """Small settings for smoke runs and tests (minutes -> seconds)."""
        return cls(max_products=200, hard_negatives=3, random_negatives=1, dev_eval_products=20, epochs=1)


def index_key(index: TagIndex) -> str:
    """What the bi-encoder scores of an index depend on: encoder and exemplar scoring, not the tags."""
    parts = {
        "encoder": index.encoder.fingerprint(),
        "exemplars": index.n_exemplars > 0,
        "exemplar_params": index.params.exemplars.to_dict() if index.n_exemplars else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ScoreFusion:
    """Logistic fusion of the cross-encoder logit and the bi-encoder score: one logit per pair.

    The cross-encoder reads text only; the bi-encoder score of an index with exemplars also carries
    the evidence of labelled products. Fitted on the reranker's dev products (leave-one-out
    candidates), tied to the index it was fitted on through :func:`index_key`.
    """

    cross: float
    bi: float
    bias: float
    index_key: str

    def apply(self, cross: np.ndarray, bi: np.ndarray) -> np.ndarray:
        return (
            self.cross * np.asarray(cross, dtype=np.float64)
            + self.bi * np.asarray(bi, dtype=np.float64)
            + self.bias
        )

    def to_dict(self) -> dict[str, Any]:
        return {"cross": self.cross, "bi": self.bi, "bias": self.bias, "index_key": self.index_key}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreFusion:
        return cls(float(data["cross"]), float(data["bi"]), float(data["bias"]), str(data["index_key"]))

    @classmethod
    def fit(
        cls, cross: np.ndarray, bi: np.ndarray, labels: np.ndarray, key: str, l2: float = 1e-3
    ) -> ScoreFusion:
        """Maximum-likelihood logistic regression on (cross, bi) by Newton's method (deterministic)."""
        x = np.column_stack([cross, bi, np.ones(len(cross))]).astype(np.float64)  # (n, 3)
        y = np.asarray(labels, dtype=np.float64)
        w = np.array([1.0, 0.0, 0.0])
        for _ in range(50):
            p = sigmoid(x @ w)
            grad = x.T @ (p - y) + l2 * w
            hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(3)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(float(w[0]), float(w[1]), float(w[2]), key)


class Reranker:
    """A cross-encoder that rescores (product, tag) pairs (implements :class:`tagindex.interfaces.Reranker`).

    Example:
        >>> reranker = Reranker.load("mwpd-reranker")
        >>> ranked = reranker.rerank(index, products, index.tag(products, top_k=50), depth=20)
    """

    def __init__(self, model: Any, params: RerankerParams, info: dict[str, Any] | None = None) -> None:
        self.model = model
        self.params = params
        self.info = info or {}
        self._tag_texts: dict[tuple[int, str], str] = {}
        self._warned = False  # the fusion-mismatch warning is logged once per reranker

    type_name = TYPE_NAME

    @property
    def depth(self) -> int:
        """Default rerank depth (candidates rescored per product)."""
        return self.params.depth

    @classmethod
    def create(cls, params: RerankerParams | None = None) -> Reranker:
        """A fresh (untrained) cross-encoder initialised from ``params.model``."""
        import torch
        from sentence_transformers import CrossEncoder

        params = params or RerankerParams()
        path = resolve_model_path(params.model)
        torch.manual_seed(params.seed)  # the new classification head is initialised randomly
        model = CrossEncoder(path, num_labels=1, max_length=params.max_length, device="cpu")
        return cls(model, params)

    # ---- text -----------------------------------------------------------------------------------
    @property
    def text_params(self) -> TextParams:
        return TextParams(
            description_chars=self.params.description_chars, attribute_labels=self.params.attribute_labels
        )

    def product_texts(self, products: Sequence[Product]) -> list[str]:
        return [product_text(p, self.text_params) for p in products]

    def tag_texts(self, index: TagIndex, tag_ids: Sequence[str]) -> list[str]:
        """Tag texts, cached per index object (the tag side never changes between products)."""
        key = id(index)
        missing = [t for t in dict.fromkeys(tag_ids) if (key, t) not in self._tag_texts]
        if missing:
            by_id = index.by_id
            for t in missing:
                self._tag_texts[(key, t)] = tag_text(by_id[t], by_id, self.text_params)
        return [self._tag_texts[(key, t)] for t in tag_ids]

    def forget_tag_texts(self) -> None:
        """Drops cached tag texts (call after an index's tags changed: a re-added id may read differently)."""
        self._tag_texts.clear()

    # ---- scoring --------------------------------------------------------------------------------
    def score_pairs(self, pairs: Sequence[tuple[str, str]], show_progress: bool = False) -> np.ndarray:
        """Cross-encoder logits (n,) for (product text, tag text) pairs, batched by length."""
        import torch

        if not pairs:
            return np.zeros(0, dtype=np.float64)
        scores = self.model.predict(
            list(pairs),
            batch_size=self.params.batch_size,
            activation_fn=torch.nn.Identity(),
            show_progress_bar=show_progress,
            convert_to_numpy=True,
        )
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def rerank(
        self,
        index: TagIndex,
        products: Sequence[Product],
        candidates: Sequence[TagResult] | Sequence[RankedCandidates],
        depth: int | None = None,
        show_progress: bool = False,
    ) -> list[RankedCandidates]:
        """Rescores the first ``depth`` candidates of each product and reorders them.

        The head (first ``depth`` candidates) is sorted by the cross-encoder (score = sigmoid of its
        logit, ties keep the bi-encoder order); the tail keeps its bi-encoder order, with scores
        scaled below the head's lowest so every list stays sorted by score. Nothing is dropped or
        added: the output holds exactly the input's tag ids.

        Args:
            index: The index the candidates came from (for tag texts).
            products: Products, in the same order as ``candidates``.
            candidates: Bi-encoder results (ancestor rows are ignored) or ranked candidates.
            depth: Rerank depth K; defaults to ``params.depth``.
            show_progress: Show a progress bar while scoring.
        """
        depth = self.params.depth if depth is None else depth
        if depth < 1:
            raise ValueError(f"rerank depth must be at least 1, got {depth}")
        if len(products) != len(candidates):
            raise ValueError(f"{len(products)} products but {len(candidates)} candidate lists")
        ranked = [c if isinstance(c, RankedCandidates) else from_bi_encoder([c])[0] for c in candidates]
        for p, r in zip(products, ranked, strict=True):
            if p.id != r.id:
                raise ValueError(f"candidate list for '{r.id}' does not match product '{p.id}'")
        texts = self.product_texts(products)
        pairs: list[tuple[str, str]] = []
        for text, r in zip(texts, ranked, strict=True):
            head = r.candidates[:depth]
            pairs.extend(zip([text] * len(head), self.tag_texts(index, [c.tag for c in head]), strict=True))
        cross = self.score_pairs(pairs, show_progress=show_progress)  # (n_pairs,)
        bi = np.array([c.bi_score for r in ranked for c in r.candidates[:depth]], dtype=np.float64)
        fusion = self.fusion_for(index)
        logits = fusion.apply(cross, bi) if fusion is not None else cross
        out: list[RankedCandidates] = []
        offset = 0
        for r in ranked:
            head = r.candidates[:depth]
            tail = r.candidates[depth:]
            head_logits = logits[offset : offset + len(head)]
            head_cross = cross[offset : offset + len(head)]
            offset += len(head)
            order = sorted(range(len(head)), key=lambda i: (-head_logits[i], i))
            probs = sigmoid(head_logits)
            new_head = [
                Candidate(
                    head[i].tag,
                    head[i].bi_score,
                    float(head_logits[i]),
                    float(probs[i]),
                    float(head_cross[i]),
                )
                for i in order
            ]
            out.append(RankedCandidates(r.id, new_head + scaled_tail(tail, new_head)))
        return out

    def fusion_for(self, index: TagIndex) -> ScoreFusion | None:
        """The fusion weights when fitted on this index's scores (else None: cross-encoder only)."""
        data = self.info.get("fusion")
        if not data:
            return None
        fusion = ScoreFusion.from_dict(data)
        if fusion.index_key != index_key(index):
            if not self._warned:
                logger.warning(
                    "the reranker's fusion weights were fitted on another index (%s, this one %s); "
                    "ranking by the cross-encoder alone",
                    fusion.index_key,
                    index_key(index),
                )
                self._warned = True
            return None
        return fusion

    def mismatch(self, index: TagIndex) -> str | None:
        """Why this reranker cannot score ``index``'s candidates as it was fitted to (None when it can):
        its fusion weights read the first-stage scores of the index it was trained with, and another
        encoder or exemplar setting gives other scores."""
        data = self.info.get("fusion")
        if not data or ScoreFusion.from_dict(data).index_key == index_key(index):
            return None
        return (
            f"the reranker fuses its scores with those of the index it was trained with "
            f"({data.get('index_key')}), not this one ({index_key(index)}: another encoder or exemplar "
            "setting): use that index or train the reranker with --index on this one"
        )

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the reranker as a directory: ``model/`` (safetensors) + ``manifest.json``."""
        with atomic_directory(path) as tmp:
            self.model.save(str(tmp / "model"), safe_serialization=True)
            info = {k: v for k, v in self.info.items() if k != "fingerprint"}
            write_manifest(
                tmp,
                {
                    "kind": KIND,
                    "format_version": FORMAT_VERSION,
                    "reranker_type": TYPE_NAME,
                    "tagindex_version": __version__,
                    "params": self.params.to_dict(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "versions": library_versions("sentence-transformers", "torch", "transformers"),
                    **info,
                },
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str], verify: bool = True) -> Reranker:
        """Loads a saved reranker directory, checking its manifest and checksums.

        Raises:
            IndexFormatError: The directory is not a complete, intact reranker.
        """
        import torch
        from sentence_transformers import CrossEncoder

        manifest = read_manifest(path, KIND, verify=verify, format_version=FORMAT_VERSION)
        directory = manifest.root  # the live version
        params = RerankerParams.from_dict(with_legacy_attribute_labels(manifest["params"]))
        torch.manual_seed(params.seed)
        model = CrossEncoder(
            str(directory / "model"), num_labels=1, max_length=params.max_length, device="cpu"
        )
        model.eval()
        info: dict[str, Any] = {k: manifest[k] for k in ("training", "dev_ids", "fusion") if k in manifest}
        info["fingerprint"] = fingerprint(manifest)
        return cls(model, params, info)

    @property
    def fingerprint(self) -> str | None:
        """Checksum of the saved model files; ties a calibration to the reranker it was fitted on."""
        value = self.info.get("fingerprint")
        return str(value) if value is not None else None


def fingerprint(manifest: dict[str, Any]) -> str:
    files = {k: v for k, v in manifest.get("files", {}).items() if k.startswith("model/")}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
