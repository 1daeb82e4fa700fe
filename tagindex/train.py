"""Contrastive fine-tuning of the bi-encoder on a shop's labelled products.

One objective serves both ways an index matches tags (see tagindex.exemplars): product -> tag text
pairs (unseen tags are matched by text) and product -> product pairs (seen tags are matched through
their labelled exemplars), trained with an in-batch-negatives ranking loss (MultipleNegativesRanking,
extended with a label-aware mask and per-row weights) through the sentence-transformers Trainer:

- hard negatives mined from the current model's tag index each epoch: siblings in the hierarchy, the
  nearest wrong tag texts, and tags that co-occur with the product's tags but are not its own;
- hierarchy-aware positives: an ancestor tag is a positive too, at ``ancestor_weight``;
- no false negatives: an in-batch candidate that is one of the anchor's own tags (or a product that
  shares its most specific tag) is masked out, so multi-label products never push their tags away;
- tag-balanced sampling: at most ``max_per_tag`` anchors per tag and epoch, re-drawn every epoch;
- augmentation for rare tags: pseudo-products written from the tag's own text and synonyms, and
  copies of its products with synonym replacement or word dropout;
- model selection on a dev split carved from the training products (never the evaluation split):
  the best epoch (or the base model, when no epoch beats it) is kept, with early stopping.

The saved model is a sentence-transformers directory plus ``tagindex_training.json`` (training
config, data fingerprints, dev metrics), loadable everywhere with ``--model MODEL_DIR``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagindex.backends import trainable_model
from tagindex.config import ExemplarParams, TagIndexParams, _Params
from tagindex.devsplit import dev_split
from tagindex.encoders import resolve_model_path
from tagindex.exemplars import ExemplarScorer, ExemplarSet, most_specific
from tagindex.schema import Product, Tag
from tagindex.store import atomic_directory, library_versions
from tagindex.text import ancestors, product_text, tag_text

logger = logging.getLogger(__name__)

TRAINING_MANIFEST = "tagindex_training.json"


@dataclass
class TrainParams(_Params):
    """Fine-tuning settings; stored in the model directory's ``tagindex_training.json``."""

    seed: int = 13
    epochs: int = 2  # upper bound; early stopping may end sooner
    patience: int = 1  # epochs without a dev improvement before stopping
    batch_size: int = 64
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1  # of the first epoch's steps
    scale: float = 20.0  # inverse softmax temperature of the ranking loss
    max_per_tag: int = 24  # anchors per tag and epoch, so head tags do not fill the batches
    min_per_tag: int = 3  # rarer tags are topped up with augmented anchors to this many
    pseudo_products: bool = True  # tag name / synonyms as extra anchors for rare tags
    product_pairs: float = 0.5  # share of anchors that also form a product -> product pair
    ancestor_pairs: float = 0.25  # share of anchors that also form a product -> ancestor tag pair
    ancestor_weight: float = 0.3  # loss weight of ancestor pairs
    hard_negatives: bool = True  # one mined negative per row (else an in-batch-only loss)
    text_neighbours: int = 5  # nearest wrong tag texts considered as hard negatives
    dev_fraction: float = 0.1
    dev_exemplars: int = 1500  # fit products re-encoded as exemplars for each dev evaluation
    max_products: int | None = None  # subsample the training products (the --fast config)
    max_rows: int | None = None  # cap on rows per epoch (after shuffling), bounding the epoch's cost
    max_seq_length: int = 128

    @classmethod
    def judgements(cls) -> TrainParams:
        """Re-training on a few hundred judgements plus pseudo-labelled catalog products.

        One epoch of at most 4,000 rows at a learning rate of 1e-4: with a few hundred products the
        library default (3e-5 over a handful of steps) barely moves the model. Chosen on a dev split
        of MWPD *train* after 300 judgements (lvl3 R@1 0.653 at 3e-5 -> 0.682 at 1e-4, 0.709 with
        the pseudo-labelled pool; docs/learning.md), never on validation.
        """
        return cls(
            epochs=1,
            learning_rate=1e-4,
            max_per_tag=24,
            min_per_tag=2,
            product_pairs=0.3,
            ancestor_pairs=0.1,
            max_rows=4000,
            dev_fraction=0.05,
            dev_exemplars=600,
            max_seq_length=64,
        )

    @classmethod
    def transfer(cls) -> TrainParams:
        """`tagindex transfer`: two bounded epochs over other sources' pairs (tagindex.transfer).

        Each epoch is 6,000 rows of 64 tokens (~10 minutes with one thread on this CPU); the transfer
        corpus's own dev split (5%) picks the epoch, so no label of the target vocabulary is involved.
        Two epochs rather than one were chosen on 100 labelled MWPD *train* offers (dev100, `adapt`
        defaults: R@1 + R@5 + F1 1.379 -> 1.705; benchmarks/results/adapt_transfer_external*.json).
        """
        return cls(epochs=2, max_rows=6000, max_seq_length=64, dev_fraction=0.05, dev_exemplars=600)

    @classmethod
    def fast(cls) -> TrainParams:
        """A CI-sized configuration: a few hundred products, one epoch."""
        return cls(
            epochs=1,
            batch_size=32,
            max_per_tag=6,
            min_per_tag=2,
            max_products=300,
            dev_exemplars=200,
            max_seq_length=64,
        )


@dataclass
class TrainReport:
    """What a training run did: dev metrics per epoch, the kept epoch and timings."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0  # 0 = the base model was kept
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time (user + system) of the whole run
    n_fit: int = 0
    n_dev: int = 0
    losses: list[float] = field(default_factory=list)


# ---- data ------------------------------------------------------------------------------------------
def fingerprint_products(products: Sequence[Product]) -> str:
    """sha256 over ids, texts and tags, in order: which data a model was trained on."""
    h = hashlib.sha256()
    for p in products:
        h.update(json.dumps([p.id, p.title, p.description, p.attributes, p.tags], sort_keys=True).encode())
    return h.hexdigest()


def fingerprint_tags(tags: Sequence[Tag]) -> str:
    h = hashlib.sha256()
    for t in tags:
        h.update(json.dumps(t.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


@dataclass
class _Row:
    anchor: str
    positive: str
    negative: str
    closure: frozenset[str]  # the anchor's tags and their ancestors
    positive_keys: frozenset[str]  # tags the positive stands for
    negative_keys: frozenset[str]
    weight: float = 1.0


class PairBuilder:
    """Turns labelled products into weighted (anchor, positive, negative) rows, one epoch at a time."""

    def __init__(
        self,
        products: Sequence[Product],
        tags: Sequence[Tag],
        params: TrainParams,
        text_params: Any,
        rejected: Mapping[str, Sequence[str]] | None = None,
    ):
        self.params = params
        # Tags a merchandiser rejected for a product (tagindex.learn): that product's hard negatives.
        known = {t.id for t in tags}
        self.rejected = [[t for t in (rejected or {}).get(p.id, ()) if t in known] for p in products]
        self.by_id = {t.id: t for t in tags}
        self.tag_texts = {t.id: tag_text(t, self.by_id, text_params) for t in tags}
        self.products = list(products)
        self.texts = [product_text(p, text_params) for p in self.products]
        inner = {t.parent for t in tags if t.parent is not None}
        self.leaves = [most_specific(p.tags, self.by_id, inner) for p in self.products]
        self.closures = [
            frozenset(t for leaf in leaves for t in [leaf, *ancestors(leaf, self.by_id)])
            for leaves in self.leaves
        ]
        self.members: dict[str, list[int]] = {}
        for i, leaves in enumerate(self.leaves):
            for leaf in leaves:
                self.members.setdefault(leaf, []).append(i)
        children: dict[str | None, list[str]] = {}
        for tag in tags:
            children.setdefault(tag.parent, []).append(tag.id)
        self.siblings = {tag.id: [s for s in children.get(tag.parent, []) if s != tag.id] for tag in tags}
        # Co-occurrence: tags appearing on the same products (multi-label vocabularies).
        self.cooccur: dict[str, set[str]] = {}
        for leaves in self.leaves:
            for t in leaves:
                self.cooccur.setdefault(t, set()).update(u for u in leaves if u != t)
        self.text_neighbours: dict[str, list[str]] = {}

    def mine(self, tag_ids: list[str], vectors: np.ndarray) -> None:
        """Nearest tag texts under the current model (vectors (n_tags, dim), rows = ``tag_ids``)."""
        k = min(self.params.text_neighbours + 1, len(tag_ids))
        sims = vectors @ vectors.T  # (n_tags, n_tags)
        order = np.argsort(-sims, axis=1, kind="stable")[:, : k + 4]
        self.text_neighbours = {
            tid: [tag_ids[j] for j in order[i] if tag_ids[j] != tid][: self.params.text_neighbours]
            for i, tid in enumerate(tag_ids)
        }

    def _negative(self, rng: random.Random, tag_id: str, closure: frozenset[str]) -> str | None:
        pool = list(
            dict.fromkeys(
                self.siblings.get(tag_id, [])
                + self.text_neighbours.get(tag_id, [])
                + sorted(self.cooccur.get(tag_id, ()))
            )
        )
        pool = [t for t in pool if t not in closure and tag_id not in ancestors(t, self.by_id)]
        return rng.choice(pool) if pool else None

    def _augment(self, rng: random.Random, text: str, tag: Tag) -> str:
        """Synonym replacement when the tag has synonyms and its name occurs, else 20% word dropout."""
        if tag.synonyms and tag.name.lower() in text.lower():
            start = text.lower().index(tag.name.lower())
            return text[:start] + rng.choice(tag.synonyms) + text[start + len(tag.name) :]
        words = text.split()
        if len(words) < 3:
            return text
        kept = [w for w in words if rng.random() > 0.2]
        return " ".join(kept or words[:1])

    def epoch_rows(self, epoch: int) -> list[_Row]:
        """Rows for one epoch, drawn with ``seed + epoch``; the order is shuffled."""
        p = self.params
        rng = random.Random(p.seed * 1_000_003 + epoch)
        rows: list[_Row] = []
        for tag_id in sorted(self.members):
            tag = self.by_id[tag_id]
            members = sorted(self.members[tag_id], key=lambda i: _rank(p.seed + epoch, self.products[i].id))
            chosen = members[: p.max_per_tag]
            anchors: list[tuple[str, int | None]] = [(self.texts[i], i) for i in chosen]
            # Rare tags: augmented copies of their products, then pseudo-products from the tag text.
            extra: list[tuple[str, int | None]] = []
            if len(anchors) < p.min_per_tag:
                for j in range(p.min_per_tag - len(anchors)):
                    source = chosen[j % len(chosen)]
                    extra.append((self._augment(rng, self.texts[source], tag), source))
                if p.pseudo_products:
                    extra += [(name, None) for name in [tag.name, *tag.synonyms]]
            for text, i in anchors + extra:
                closure = (
                    self.closures[i] if i is not None else frozenset([tag_id, *ancestors(tag_id, self.by_id)])
                )
                neg = self._negative(rng, tag_id, closure) if p.hard_negatives else None
                judged = [t for t in self.rejected[i] if t not in closure] if i is not None else []
                if judged and p.hard_negatives:
                    neg = rng.choice(judged)  # a judged mistake beats a mined one
                rows.append(self._row(text, self.tag_texts[tag_id], {tag_id}, neg, closure, 1.0))
                if i is not None and len(members) > 1 and rng.random() < p.product_pairs:
                    other = rng.choice([m for m in members if m != i])
                    neg_product = None
                    if neg is not None and self.members.get(neg):
                        neg_product = rng.choice(self.members[neg])
                    rows.append(
                        _Row(
                            text,
                            self.texts[other],
                            self.texts[neg_product] if neg_product is not None else self._neg_text(neg),
                            closure,
                            frozenset(self.leaves[other]),
                            frozenset(self.leaves[neg_product]) if neg_product is not None else _keys(neg),
                        )
                    )
                parent = tag.parent
                if parent is not None and rng.random() < p.ancestor_pairs:
                    neg_parent = self._negative(rng, parent, closure) if p.hard_negatives else None
                    rows.append(
                        self._row(
                            text, self.tag_texts[parent], {parent}, neg_parent, closure, p.ancestor_weight
                        )
                    )
        rng.shuffle(rows)
        return rows[: p.max_rows] if p.max_rows is not None else rows

    def _neg_text(self, neg: str | None) -> str:
        return self.tag_texts[neg] if neg is not None else ""

    def _row(
        self,
        anchor: str,
        positive: str,
        keys: set[str],
        neg: str | None,
        closure: frozenset[str],
        weight: float,
    ) -> _Row:
        return _Row(anchor, positive, self._neg_text(neg), closure, frozenset(keys), _keys(neg), weight)


def _keys(tag_id: str | None) -> frozenset[str]:
    return frozenset([tag_id]) if tag_id is not None else frozenset()


# ---- loss ------------------------------------------------------------------------------------------
def _loss_class() -> Any:
    import torch
    from torch import nn

    class LabelAwareRankingLoss(nn.Module):
        """MultipleNegativesRankingLoss with a false-negative mask and per-row weights.

        The dataset's ``label`` column is a row number into ``self.rows``; for anchor i, an in-batch
        candidate (another row's positive or negative) is masked when it stands for one of anchor
        i's own tags, and empty negatives (no hard negative found) are masked everywhere.
        """

        def __init__(self, model: Any, scale: float) -> None:
            super().__init__()
            self.model = model
            self.scale = scale
            self.rows: list[_Row] = []
            self.history: list[float] = []

        def forward(self, sentence_features: Any, labels: Any) -> Any:
            feats = list(sentence_features)
            emb = [nn.functional.normalize(self.model(f)["sentence_embedding"], dim=-1) for f in feats]
            anchors, candidates = emb[0], torch.cat(emb[1:], dim=0)  # (b, dim), (b * (cols - 1), dim)
            scores = self.scale * anchors @ candidates.T  # (b, b * (cols - 1))
            rows = [self.rows[i] for i in labels.tolist()]
            b = len(rows)
            mask = np.zeros(tuple(scores.shape), dtype=bool)  # (b, b * (cols - 1))
            for i, ri in enumerate(rows):
                for j, rj in enumerate(rows):
                    if i != j and rj.positive_keys & ri.closure:
                        mask[i, j] = True
                    if len(feats) > 2 and (not rj.negative or rj.negative_keys & ri.closure):
                        mask[i, b + j] = True
            scores = scores.masked_fill(torch.from_numpy(mask).to(scores.device), float("-inf"))
            target = torch.arange(b, device=scores.device)
            per_row = nn.functional.cross_entropy(scores, target, reduction="none")  # (b,)
            weights = torch.tensor([r.weight for r in rows], device=scores.device, dtype=per_row.dtype)
            loss = (per_row * weights).sum() / weights.sum()
            self.history.append(float(loss.detach()))
            return loss

    return LabelAwareRankingLoss


# ---- dev evaluation --------------------------------------------------------------------------------
def evaluate_dev(
    model: Any,
    tags: Sequence[Tag],
    fit: Sequence[Product],
    dev: Sequence[Product],
    text_params: Any,
    batch_size: int = 64,
) -> dict[str, float]:
    """Dev metrics of an encoder: exemplar-scored P@1 (fit products as exemplars) and text-only R@5.

    ``selection`` (their mean) picks the epoch: it rewards matching seen tags through exemplars and
    keeping tag texts useful for tags without examples.
    """
    by_id = {t.id: t for t in tags}

    def enc(texts: list[str]) -> np.ndarray:
        return np.asarray(
            model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False),
            dtype=np.float32,
        )

    tag_vectors = enc([tag_text(t, by_id, text_params) for t in tags])
    fit_vectors = enc([product_text(p, text_params) for p in fit])
    dev_vectors = enc([product_text(p, text_params) for p in dev])
    inner = {t.parent for t in tags if t.parent is not None}
    gold = [set(most_specific(p.tags, by_id, inner)) for p in dev]
    out: dict[str, float] = {}
    with_ex = ExemplarScorer(
        tags,
        tag_vectors,
        ExemplarSet([p.id for p in fit], [p.tags for p in fit], fit_vectors),
        ExemplarParams(),
    )
    _, ids = with_ex.top(dev_vectors, 1)
    out["exemplar_p1"] = float(np.mean([r[0] in g for r, g in zip(ids, gold, strict=True)]))
    text_only = ExemplarScorer(tags, tag_vectors, ExemplarSet([], [], fit_vectors[:0]), ExemplarParams())
    _, ids = text_only.top(dev_vectors, 5)
    out["text_r5"] = float(np.mean([len(g & set(r)) / len(g) for r, g in zip(ids, gold, strict=True)]))
    out["selection"] = (out["exemplar_p1"] + out["text_r5"]) / 2
    return out


# ---- training --------------------------------------------------------------------------------------
def _subsample(products: Sequence[Product], n: int | None, seed: int) -> list[Product]:
    if n is None or n >= len(products):
        return list(products)
    keep = {p.id for p in sorted(products, key=lambda p: _rank(seed, "sub:" + p.id))[:n]}
    return [p for p in products if p.id in keep]


def train(
    products: Sequence[Product],
    tags: Sequence[Tag],
    out: str | os.PathLike[str],
    base: str | None = None,
    params: TrainParams | None = None,
    index_params: TagIndexParams | None = None,
    show_progress: bool = False,
    rejected: Mapping[str, Sequence[str]] | None = None,
) -> TrainReport:
    """Fine-tunes ``base`` (default: the packaged MiniLM) and saves the selected model to ``out``.

    Args:
        products: Labelled training products (``tags`` are ids in ``tags``). A dev split is carved
            from them for model selection.
        tags: The tag vocabulary.
        out: Model directory to write (replaced only on success).
        base: Model directory or ``packaged:...`` name to start from.
        params: Training settings.
        index_params: Text settings shared with the index (product/tag text).
        show_progress: Progress bars.
        rejected: Product id -> tags judged wrong for it (`tagindex.learn`); each such tag is the
            hard negative of that product's rows (else one is mined as usual).

    Returns:
        A report with dev metrics per epoch.

    Raises:
        ValueError: No labelled products, or tags not in the vocabulary.
    """
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers import set_seed

    params = params or TrainParams()
    index_params = index_params or TagIndexParams()
    text_params = index_params.text
    base = trainable_model(base or index_params.encoder.model)
    start = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = usage.ru_utime + usage.ru_stime
    known = {t.id for t in tags}
    labelled = [p for p in products if p.tags]
    if not labelled:
        raise ValueError("no labelled products to train on (products need gold `tags`)")
    unknown = sorted({t for p in labelled for t in p.tags if t not in known})
    if unknown:
        raise ValueError(
            f"{len(unknown)} tag id(s) used by products are not in the vocabulary: {unknown[:5]}"
        )
    if len(labelled) < len(products):
        logger.warning("%d product(s) without tags are ignored", len(products) - len(labelled))
    fit, dev = dev_split(labelled, params.dev_fraction, params.seed)
    fit = _subsample(fit, params.max_products, params.seed)
    if params.max_products is not None:
        dev = _subsample(dev, max(params.max_products // 4, 20), params.seed)
    dev_fit = _subsample(fit, params.dev_exemplars, params.seed)
    report = TrainReport(n_fit=len(fit), n_dev=len(dev))
    logger.info("training on %d products, selecting on %d dev products", len(fit), len(dev))

    set_seed(params.seed)
    model = SentenceTransformer(resolve_model_path(base), device=_device(), local_files_only=True)
    model.max_seq_length = params.max_seq_length
    builder = PairBuilder(fit, tags, params, text_params, rejected)
    tag_ids = [t.id for t in tags]
    loss = _loss_class()(model, params.scale)
    use_cuda = torch.cuda.is_available()

    metrics = evaluate_dev(model, tags, dev_fit, dev, text_params)
    report.epochs.append({"epoch": 0, **metrics})
    logger.info("epoch 0 (base model) dev: %s", _fmt(metrics))
    best_state = copy.deepcopy(model.state_dict())
    best = metrics["selection"]
    stale = 0
    with tempfile.TemporaryDirectory(prefix="tagindex-train-") as scratch:
        for epoch in range(1, params.epochs + 1):
            set_seed(params.seed + epoch)
            tag_vectors = model.encode(
                [builder.tag_texts[t] for t in tag_ids], normalize_embeddings=True, show_progress_bar=False
            )
            builder.mine(tag_ids, np.asarray(tag_vectors, dtype=np.float32))
            rows = builder.epoch_rows(epoch)
            loss.rows = rows
            columns: dict[str, list[Any]] = {
                "anchor": [r.anchor for r in rows],
                "positive": [r.positive for r in rows],
            }
            if params.hard_negatives:
                columns["negative"] = [r.negative for r in rows]
            columns["label"] = list(range(len(rows)))
            dataset = Dataset.from_dict(columns)
            first = epoch == 1
            args = SentenceTransformerTrainingArguments(
                output_dir=scratch,
                num_train_epochs=1,
                per_device_train_batch_size=params.batch_size,
                learning_rate=params.learning_rate,
                lr_scheduler_type="constant_with_warmup" if first else "constant",
                warmup_steps=int(params.warmup_ratio * len(rows) / params.batch_size) if first else 0,
                seed=params.seed + epoch,
                data_seed=params.seed + epoch,
                save_strategy="no",
                report_to="none",
                logging_strategy="no",  # the loss keeps its own history
                disable_tqdm=not show_progress,
                bf16=use_cuda and torch.cuda.is_bf16_supported(),
                dataloader_drop_last=False,
                dataloader_pin_memory=use_cuda,
            )
            before = len(loss.history)
            trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
            # transformers prints its run summary to stdout, where the CLI's JSON goes.
            with contextlib.redirect_stdout(sys.stderr):
                trainer.train()
            epoch_losses = loss.history[before:]
            report.losses.extend(epoch_losses)
            metrics = evaluate_dev(model, tags, dev_fit, dev, text_params)
            metrics["train_loss"] = float(np.mean(epoch_losses)) if epoch_losses else float("nan")
            metrics["rows"] = len(rows)
            report.epochs.append({"epoch": epoch, **metrics})
            logger.info("epoch %d: %d rows, dev %s", epoch, len(rows), _fmt(metrics))
            if metrics["selection"] > best:
                best, stale, report.best_epoch = metrics["selection"], 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= params.patience:
                    logger.info("early stop after epoch %d (best epoch %d)", epoch, report.best_epoch)
                    break
    model.load_state_dict(best_state)
    report.seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report.cpu_seconds = usage.ru_utime + usage.ru_stime - cpu_start
    with atomic_directory(out) as tmp:
        model.save(str(tmp))
        manifest = {
            "kind": "tagindex-model",
            "base": base,
            "train_params": params.to_dict(),
            "text_params": text_params.to_dict(),
            "data": {
                "products": fingerprint_products(labelled),
                "tags": fingerprint_tags(tags),
                "n_products": len(labelled),
                "n_fit": len(fit),
                "n_dev": len(dev),
                "n_tags": len(tags),
                "dev_split": {"fraction": params.dev_fraction, "seed": params.seed},
            },
            "dev_metrics": report.epochs,
            "best_epoch": report.best_epoch,
            "seconds": round(report.seconds, 1),
            "cpu_seconds": round(report.cpu_seconds, 1),
            "torch_threads": torch.get_num_threads(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": library_versions("sentence-transformers", "torch", "transformers", "tagindex"),
        }
        (tmp / TRAINING_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("kept epoch %d; saved %s in %.0fs", report.best_epoch, out, report.seconds)
    return report


def read_training_manifest(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The training record of a model directory written by :func:`train`."""
    path = Path(model_dir) / TRAINING_MANIFEST
    if not path.exists():
        raise ValueError(f"{model_dir}: not a tagindex-trained model (no {TRAINING_MANIFEST})")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
