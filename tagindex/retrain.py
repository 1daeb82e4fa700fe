"""Re-training on schedule: fine-tune the encoder on every judgement and write a new index version.

:func:`retrain` takes a saved index, the judged products (from the service's feedback database or
the index's own learned state) and optionally more labelled products, then

1. holds out a seeded slice of the judged products (``holdout``) for evaluation;
2. optionally labels unjudged catalog products (``pool``) with the current index where it is
   confident (:func:`pseudo_label`: self-training, the judged products' labels spread to the
   catalog products their exemplars clearly claim);
3. fine-tunes the index's encoder (:func:`tagindex.train.train`) on the other judged products, the
   labelled ones and the pseudo-labelled ones, with each product's rejected tags as its hard
   negatives;
4. builds the new index with the new encoder: labelled products become its exemplars, and every
   judgement is learned again (:mod:`tagindex.learn`, ids kept), so undo still works after a retrain;
5. evaluates old and new index on the held-out slice, each scoring the held-out products as if
   their own judgements had not been made (leave-one-out), and stores the report in the new
   index's manifest (``retrain``) with ``index_version`` one above the old one.

The old directory is never modified, so switching back is loading it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagindex.backends import PYTORCH
from tagindex.compressed_exemplars import CodedExemplars, CompressedParams
from tagindex.config import _Params
from tagindex.errors import CompatibilityError, InputError
from tagindex.index import TagIndex
from tagindex.learn import learn, rewrite_index, state_of, undo
from tagindex.metrics import evaluate, run_from_results
from tagindex.schema import Product
from tagindex.text import ancestors

if TYPE_CHECKING:
    from tagindex.train import TrainParams

logger = logging.getLogger(__name__)

# Below this many judged + labelled products, re-training uses TrainParams.judgements() (a higher
# learning rate over one short epoch) instead of the library defaults, which are set for thousands.
FEW_PRODUCTS = 2000


@dataclass
class PseudoLabelParams(_Params):
    """Which unjudged catalog products the current index labels for re-training (self-training).

    A linear classifier (multinomial logistic regression, L2 strength ``1 / c``) is fitted on the
    exemplar vectors, with each candidate tag's own text vector as one more example of it, and a
    pool product is kept when its most probable tag reaches ``min_probability``. Chosen on a dev
    split of MWPD *train* after 300 judgements, never on validation: the classifier's confident
    products (~4,100 of 8,300, labels right for 87%) lifted the re-trained lvl3 R@1 from 0.682 to
    0.709, while the products the nearest-exemplar vote was sure of (3,300, 86% right) lifted it only
    to 0.686: those sit next to an exemplar already and teach the encoder little.
    """

    min_probability: float = 0.5
    c: float = 100.0  # inverse L2 strength, as scikit-learn's ``C``
    max_products: int | None = 20000  # the most probable ones first, bounding the training cost
    max_tags: int = 2000  # above this many candidate tags, only tags with exemplars are classes


def fit_softmax(
    x: np.ndarray, y: np.ndarray, n_classes: int, c: float, max_iter: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by L-BFGS: weights (dim, n_classes) and bias (n_classes,).

    Minimises ``c * sum(log loss) + ||W||^2 / 2`` (scikit-learn's objective for ``C = c``); full
    batch, deterministic for the same input.
    """
    import torch

    xt = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))  # (n, dim)
    yt = torch.as_tensor(y, dtype=torch.long)  # (n,)
    w = torch.zeros((x.shape[1], n_classes), requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt, reduction="mean")
        loss = loss + (w * w).sum() / (2.0 * c * len(y))
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def pseudo_label(
    index: TagIndex,
    pool: Sequence[Product],
    params: PseudoLabelParams | None = None,
    vectors: np.ndarray | None = None,
    skip: set[str] | None = None,
) -> tuple[list[Product], dict[str, Any]]:
    """Labels the pool products the index's exemplars classify confidently (see PseudoLabelParams).

    Args:
        index: An index with exemplars or judgements.
        pool: Unjudged catalog products (their ``tags`` are ignored).
        params: Thresholds.
        vectors: The pool's vectors (n, dim) from ``index``'s encoder; encoded when omitted.
        skip: Product ids not to label (judged or labelled ones).

    Returns:
        The kept products, each tagged with its tag and that tag's ancestors, root first (pool
        order), and a report (pool size, candidates, kept, distinct tags).

    Raises:
        InputError: The index has no exemplar to learn from.
        CompatibilityError: The index stores its exemplars as codes (no float32 vectors).
    """
    params = params or PseudoLabelParams()
    scorer = index.scorer()
    if scorer is None:
        raise InputError("pseudo-labels need an index with judged or labelled products (none here)")
    if scorer.ex_vectors is None:
        raise CompatibilityError(
            f"pseudo-labels fit a classifier on the float32 exemplar vectors; this index stores its "
            f"exemplars as {scorer.storage} codes (build it with --exemplar-codes float32 to self-train)"
        )
    rows = [i for i, p in enumerate(pool) if not skip or p.id not in skip]
    report: dict[str, Any] = {"pool": len(pool), "candidates": len(rows), **params.to_dict()}
    if not rows:
        return [], {**report, "kept": 0, "tags": 0}
    vectors = index.encode_products([pool[i] for i in rows]) if vectors is None else vectors[rows]
    ex_rows, ex_cols = scorer.member_rows, scorer.member_cols  # one (exemplar, tag) pair per label
    classes = np.arange(len(scorer.targets))
    if len(classes) > params.max_tags:
        classes = np.unique(ex_cols)
    col_of = np.full(len(scorer.targets), -1, dtype=np.int64)
    col_of[classes] = np.arange(len(classes))
    x = np.concatenate([scorer.ex_vectors[ex_rows], scorer.target_vectors[classes]])  # (n, dim)
    y = np.concatenate([col_of[ex_cols], np.arange(len(classes))])
    keep = y >= 0
    w, b = fit_softmax(x[keep], y[keep], len(classes), params.c)
    kept: list[tuple[float, int, str]] = []  # (probability, pool row, tag)
    for start in range(0, len(rows), 4096):
        logits = np.asarray(vectors[start : start + 4096], dtype=np.float32) @ w + b  # (b, classes)
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        best = prob.argmax(axis=1)
        top = prob[np.arange(len(prob)), best]
        kept += [
            (float(top[i]), rows[start + i], scorer.targets[classes[best[i]]])
            for i in np.flatnonzero(top >= params.min_probability)
        ]
    if params.max_products is not None and len(kept) > params.max_products:
        kept = sorted(kept, key=lambda k: (-k[0], k[1]))[: params.max_products]
    kept.sort(key=lambda k: k[1])
    by_id = {t.id: t for t in index.tags}
    out = []
    for _, row, tag in kept:
        p = pool[row]
        out.append(Product(p.id, p.title, p.description, p.attributes, [*ancestors(tag, by_id)[::-1], tag]))
    report.update(kept=len(out), tags=len({t for _, _, t in kept}))
    return out, report


def _held_out(ids: Sequence[str], fraction: float, seed: int) -> set[str]:
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n = int(round(fraction * len(ranked))) if len(ranked) >= 5 else 0
    return set(ranked[:n])


def _score(index: TagIndex, products: list[Product], gold: dict[str, list[str]]) -> dict[str, Any]:
    if not products:
        return {}
    results = index.tag(products, top_k=10, include_ancestors=True, leave_one_out=False)
    report = evaluate(run_from_results(results), gold, index.tags, ks=(1, 5))
    out = {"recall@1": report["overall"]["recall@1"], "recall@5": report["overall"]["recall@5"]}
    for level, entry in report.get("levels", {}).items():
        out[f"lvl{level}_recall@1"] = entry["recall@1"]
    return out


def merge_judged(index: TagIndex, rows: Sequence[dict[str, Any]]) -> list[tuple[Product, list[str]]]:
    """Judged products: the index's learned state, overridden by ``rows`` (feedback export rows).

    Returns:
        (product with accepted tags, rejected tags) per judged product, in a stable order.
    """
    merged: dict[str, tuple[Product, list[str]]] = {}
    if index.learned is not None:
        for row in index.learned.export_products():
            merged[row["id"]] = (
                Product(row["id"], row["title"], row["description"], row["attributes"], row["tags"]),
                row["rejected"],
            )
    known = {t.id for t in index.tags}
    for n, row in enumerate(rows, 1):
        try:
            p = Product(
                str(row["id"]),
                str(row["title"]),
                row.get("description") or "",
                row.get("attributes") or {},
                list(row.get("tags") or []),
            )
        except KeyError as exc:
            raise InputError(f"judged product {n}: missing {exc}") from None
        bad = [t for t in [*p.tags, *(row.get("rejected") or [])] if t not in known]
        if bad:
            raise InputError(f"judged product '{p.id}': tag id(s) not in the index: {bad[:5]}")
        merged[p.id] = (p, list(row.get("rejected") or []))
    return [merged[k] for k in sorted(merged)]


def retrain(
    index_dir: str | os.PathLike[str],
    judged_rows: Sequence[dict[str, Any]],
    out: str | os.PathLike[str],
    labelled: Sequence[Product] = (),
    train_params: TrainParams | None = None,
    holdout: float = 0.2,
    seed: int = 13,
    pool: Sequence[Product] = (),
    pseudo: PseudoLabelParams | None = None,
) -> dict[str, Any]:
    """Fine-tunes on all judgements + labelled products and writes a new index version to ``out``.

    Args:
        index_dir: The current index (read only).
        judged_rows: Rows of judged products (``id``, ``title``, ``description``, ``attributes``,
            ``tags`` = accepted or added, ``rejected``), e.g. ``FeedbackStore.export_products()``.
        out: Directory for the new index (replaced atomically).
        labelled: Labelled products (gold ``tags``): training data and the new index's exemplars.
        train_params: :class:`tagindex.train.TrainParams` (default: ``TrainParams.judgements()``
            below ``FEW_PRODUCTS`` judged + labelled products, else the library's defaults).
        holdout: Share of judged products held out of training for the evaluation.
        seed: Seed of the held-out slice.
        pool: Unjudged catalog products; those the current index labels confidently
            (:func:`pseudo_label`) are added to the training data (not to the exemplars).
        pseudo: Thresholds for ``pool``.

    Returns:
        The report stored in the new manifest.

    Raises:
        InputError: Nothing to train on, unknown tags, or base exemplars whose text is unknown.
    """
    from tagindex.train import TrainParams, train

    start = time.perf_counter()
    old = TagIndex.load(index_dir)
    from_version = old.learned.version if old.learned is not None else 0
    judged = merge_judged(old, judged_rows)
    base = old.base_exemplars
    if base is not None and len(base) and not labelled:
        raise InputError(
            f"{index_dir}: the index holds {len(base)} labelled exemplars whose text is not stored; "
            "pass them as labelled products (--products) so the new encoder can re-encode them"
        )
    accepted = [p for p, _ in judged if p.tags]
    if not accepted and not labelled:
        raise InputError(
            "nothing to train on: no judged product has an accepted tag and no labelled products"
        )
    held = _held_out([p.id for p in accepted], holdout, seed)
    fit = [p for p in accepted if p.id not in held] + [p for p in labelled if p.id not in held]
    rejected = {p.id: r for p, r in judged if r}
    if train_params is None:
        train_params = TrainParams.judgements() if len(fit) < FEW_PRODUCTS else TrainParams()
    # Every judgement of the old index, kept before the held-out ones are undone on it: the new
    # index learns them all again. Undone once here, the old index is evaluated without them and
    # they never label their neighbours for self-training.
    state = old.learned
    logged = list(state.judgements) if state is not None else []
    next_id = state.next_id() if state is not None else 1
    held_logged = [j for j in logged if j.product_id in held]
    for source in sorted({j.source for j in held_logged}):
        undo(old, [j.id for j in held_logged if j.source == source], source=source)
    pseudo_report: dict[str, Any] | None = None
    if pool:
        skip = {p.id for p, _ in judged} | {p.id for p in labelled}
        pseudo_products, pseudo_report = pseudo_label(old, pool, pseudo, skip=skip)
        fit += pseudo_products
        logger.info(
            "pseudo-labelled %d of %d pool products (%d tags)",
            pseudo_report["kept"],
            pseudo_report["candidates"],
            pseudo_report["tags"],
        )
    with tempfile.TemporaryDirectory(prefix=".retrain-", dir=Path(out).resolve().parent) as tmp:
        model_dir = Path(tmp) / "model"
        report = train(
            fit,
            old.tags,
            model_dir,
            params=train_params,
            index_params=old.params,
            rejected=rejected,
        )
        params = type(old.params).from_dict(old.params.to_dict())
        params.encoder.model = str(model_dir)
        # The PyTorch encoder keeps the fine-tuned weights inside the new index, so the next round
        # trains on from them; an ONNX export would keep only its inference graph.
        params.encoder.backend = PYTORCH
        new = TagIndex.build(old.tags, params)
        if labelled:
            new.add_exemplars(list(labelled))
            if isinstance(base, CodedExemplars):  # the new index stores its exemplars as the old did
                new.compress_exemplars(CompressedParams.from_dict(base.codes.params.to_dict()))
        # Every judgement again, with its id (so each stays undoable); the held-out ones last, after
        # the new index has been evaluated without them.
        rows = [(j.source, j.id, j.product_id, j.tag, j.action) for j in logged]
        logged_products = {j.product_id for j in logged}
        for p, r in judged:
            if p.id not in logged_products:
                for tag, action in [(t, "accept") for t in p.tags] + [(t, "reject") for t in r]:
                    rows.append(("learn", next_id, p.id, tag, action))
                    next_id += 1
        products = [p for p, _ in judged]
        held_products = [p for p in products if p.id in held]
        gold = {p.id: list(p.tags) for p in held_products}
        sources = sorted({row[0] for row in rows})
        for part in (False, True):
            for source in sources:
                chosen = [row for row in rows if (row[2] in held) == part and row[0] == source]
                if chosen:
                    learn(
                        new,
                        products,
                        judgements=[row[2:] for row in chosen],
                        ids=[row[1] for row in chosen],
                        source=source,
                    )
            if not part:
                metrics = {"new": _score(new, held_products, gold)}
        metrics["old"] = _score(old, held_products, gold)
        new_state = state_of(new)
        new_state.version = from_version + 1  # one version above the index it replaces
        result = {
            "from": str(Path(index_dir)),
            "from_version": from_version,
            "judged_products": len(judged),
            "trained_on": len(fit),
            "pseudo_labelled": pseudo_report,
            "held_out": len(held),
            "holdout": holdout,
            "seed": seed,
            "held_out_metrics": metrics,
            "kept_epoch": report.best_epoch,
            "train_seconds": round(report.seconds, 1),
            "seconds": round(time.perf_counter() - start, 1),
        }
        new.save(out)
    rewrite_index(
        out,
        lambda d: (d / "retrain.json").write_text(json.dumps(result, indent=2) + "\n"),
        {"retrain": result},
    )
    logger.info(
        "retrained: held-out recall@1 %s -> %s",
        metrics["old"].get("recall@1"),
        metrics["new"].get("recall@1"),
    )
    return result
