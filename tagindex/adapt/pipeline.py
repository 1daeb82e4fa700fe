"""`tagindex adapt`: fits a tag index to an unlabelled catalog, without any label.

Steps (each switchable in :class:`AdaptParams`, measured one by one in benchmarks/adapt_ablation.py):

1. hubness statistics of every tag over the catalog (:mod:`tagindex.adapt.hubness`), and last, on
   the final adapted scores, the optional k-occurrence cap (per-tag penalties);
2. hierarchy-aware decoding (:mod:`tagindex.adapt.hierarchy`);
3. tag text enrichment with mined class-indicative terms (:mod:`tagindex.adapt.enrich`);
4. self-training rounds: pseudo-labels -> tag prototypes (:mod:`tagindex.adapt.selftrain`), optionally
   preceded by label propagation (:mod:`tagindex.adapt.propagate`) and followed by contrastive
   fine-tuning of the encoder on the confident pseudo-labels (tagindex.train);
5. the index is saved in the ordinary format with adapted tag vectors, enriched texts and the
   query-time :class:`~tagindex.adapt.adjust.ScoreAdjuster`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagindex.adapt.adjust import ScoreAdjuster
from tagindex.adapt.enrich import drift_guard, enriched_text, mine_terms
from tagindex.adapt.graft import place_source
from tagindex.adapt.hierarchy import leaves_mask, parent_rows
from tagindex.adapt.hubness import fit_hubness, fit_occurrence_cap
from tagindex.adapt.lexical import TypeLexicon, match_text
from tagindex.adapt.params import AdaptParams, unlevelled_categories
from tagindex.adapt.propagate import mutual_knn, spread
from tagindex.adapt.selftrain import confident, prototypes, pseudo_labels
from tagindex.config import TagIndexParams
from tagindex.encoders import Encoder
from tagindex.index import TagIndex
from tagindex.schema import Product, Tag
from tagindex.text import tag_text

if TYPE_CHECKING:
    from scipy import sparse

logger = logging.getLogger(__name__)

_CHUNK = 2048


@dataclass
class AdaptResult:
    """Adapted tag vectors and texts, the query-time adjuster, the catalog's final pseudo-labels."""

    tag_vectors: np.ndarray
    texts: list[str]
    adjuster: ScoreAdjuster
    labels: np.ndarray  # final pseudo-label (tag row) per catalog product
    confident: np.ndarray  # mask of the products used as prototypes
    report: dict[str, Any] = field(default_factory=dict)


def fit_adjuster(
    tags: Sequence[Tag],
    catalog: np.ndarray,
    tag_vectors: np.ndarray,
    params: AdaptParams,
    lexicon: TypeLexicon | None = None,
) -> ScoreAdjuster:
    """Hubness statistics of ``tag_vectors`` over the catalog plus the decoding settings (and the
    tags' ``lexicon`` for the title match, built here when not given)."""
    parents = parent_rows(tags)
    hierarchy, leaves_only = params.decoding(parents)
    weight = params.resolved_hubness_weight(tags)
    skip = params.hub_skip(n_rankable(parents, leaves_only), len(catalog)) if len(catalog) else None
    method = "none" if skip or weight == 0 else params.hubness
    bias, scale = fit_hubness(catalog, tag_vectors, method, params.hubness_k, weight)
    if lexicon is None and params.lexical_weight > 0:
        lexicon = tag_lexicon(tags, params)
    return ScoreAdjuster.for_tags(
        tags,
        bias,
        scale,
        params.hierarchy_weight if hierarchy else 1.0,
        leaves_only,
        {
            "hubness": method,
            "hubness_k": params.hubness_k,
            "hubness_weight": weight,
            "n_catalog": len(catalog),
            **({"hubness_skipped": skip} if skip else {}),
        },
        params.lexical_weight,
        params.lexical_other_word,
        params.lexical_generic_df,
        lexicon,
    )


def tag_lexicon(tags: Sequence[Tag], params: AdaptParams) -> TypeLexicon:
    """The title match's lexicon of the tag names with ``params``' settings."""
    return TypeLexicon(
        [t.name for t in tags],
        params.lexical_generic_df,
        params.lexical_missing_modifiers,
        params.lexical_unnamed_kind,
        params.lexical_category,
        params.lexical_category_attributes,
    )


def n_rankable(parents: np.ndarray, leaves_only: bool) -> int:
    """How many tags an adjuster with these settings ranks (all, or the leaves)."""
    return int(leaves_mask(parents).sum()) if leaves_only else len(parents)


def cap_occurrences(
    adjuster: ScoreAdjuster,
    catalog: np.ndarray,
    tag_vectors: np.ndarray,
    params: AdaptParams,
    lexical: sparse.csr_matrix | None = None,
) -> dict[str, Any]:
    """Fits the k-occurrence cap on the catalog's final adapted scores into ``adjuster.penalty``."""
    rankable = adjuster.rankable
    parents = adjuster.parents[rankable]
    family = np.where(parents >= 0, parents, rankable) if params.occurrence_prevalence == "family" else None

    def scores(rows: np.ndarray) -> np.ndarray:
        match = lexical[rows] if lexical is not None else None
        return adjuster.adjust(catalog[rows] @ tag_vectors.T, penalise=False, lexical=match)[:, rankable]

    penalty, report = fit_occurrence_cap(
        scores,
        len(catalog),
        len(rankable),
        params.occurrence_k,
        params.occurrence_limit,
        params.occurrence_prevalence_factor,
        params.occurrence_iterations,
        groups=family,
    )
    adjuster.penalty = np.zeros(len(adjuster), dtype=np.float32)
    adjuster.penalty[rankable] = penalty
    adjuster.info["occurrence_cap"] = report
    logger.info("occurrence cap: %s", report)
    return report


def score_catalog(
    adjuster: ScoreAdjuster,
    catalog: np.ndarray,
    tag_vectors: np.ndarray,
    k: int = 2,
    lexical: sparse.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` adapted scores and tag rows of every catalog product, in chunks.

    ``lexical`` is the catalog titles' match (:meth:`ScoreAdjuster.match`) when the adjuster uses it.
    """
    scores, rows = [], []
    for start in range(0, len(catalog), _CHUNK):
        stop = start + _CHUNK
        match = lexical[start:stop] if lexical is not None else None
        s, r = adjuster.top(catalog[start:stop] @ tag_vectors.T, k, lexical=match)
        scores.append(s)
        rows.append(r)
    return np.concatenate(scores), np.concatenate(rows)


def graft_lexicon(
    lexicon: TypeLexicon,
    tags: Sequence[Tag],
    tag_vectors: np.ndarray,
    source: Sequence[Tag],
    source_vectors: np.ndarray,
    params: AdaptParams,
    exclude: Collection[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Lends the ``source`` taxonomy's names to the tags of ``lexicon`` (:mod:`tagindex.adapt.graft`)
    and reports what was lent; ``exclude`` holds (source category id, tag id) pairs never lent.

    Raises:
        ValueError: An exclusion names a source category or tag that is not there.
    """
    source_row = {t.id: i for i, t in enumerate(source)}
    tag_row = {t.id: i for i, t in enumerate(tags)}
    unknown = sorted(
        {s for s, _ in exclude if s not in source_row} | {t for _, t in exclude if t not in tag_row}
    )
    if unknown:
        raise ValueError(f"graft exclusions name ids that are not there: {', '.join(unknown[:5])}")
    excluded = {(source_row[s], tag_row[t]) for s, t in exclude}
    parents = parent_rows(tags)
    leaves_only = params.decoding(parents)[1]
    rankable = np.flatnonzero(leaves_mask(parents)) if leaves_only else np.arange(len(tags))
    # An attribute value is not a class with kinds below it: only category-like tags receive names.
    values = lexicon.value_rows
    rankable = np.array([r for r in rankable.tolist() if r not in values], dtype=np.int64)
    lent = place_source(source, source_vectors, tag_vectors, lexicon, rankable, params.graft_top_k, excluded)
    chosen = np.flatnonzero(lent >= 0).tolist()
    lexicon.graft(
        [source[i].name for i in chosen],
        lent[chosen].tolist(),
        params.graft_strength,
        [source[i].id for i in chosen],
    )
    return {
        "source_categories": len(source),
        "excluded": len(excluded),
        "lent": len(chosen),
        "tags_receiving": len(set(lent[chosen].tolist())),
        "examples": [
            f"{source[i].name} -> {tags[lent[i]].name}" for i in chosen[:: max(1, len(chosen) // 5)][:5]
        ],
    }


def adapt_vectors(
    tags: Sequence[Tag],
    texts: Sequence[str],
    tag_vectors: np.ndarray,
    catalog: np.ndarray,
    catalog_texts: Sequence[str],
    params: AdaptParams,
    encode: Callable[[list[str]], np.ndarray],
    graft: tuple[Sequence[Tag], np.ndarray] | None = None,
    graft_exclude: Collection[tuple[str, str]] = (),
) -> AdaptResult:
    """Runs steps 1-4 on vectors already encoded.

    Args:
        tags: The vocabulary, in the row order of ``tag_vectors``.
        texts: The tags' encoder texts.
        tag_vectors: Unit tag vectors (tags, dim).
        catalog: Unit vectors of the unlabelled catalog products (n, dim).
        catalog_texts: Product titles (mined for enrichment terms, matched against the tag names).
        params: What to do.
        encode: Encodes tag texts with the same encoder (for enrichment).
        graft: An outside category taxonomy and the unit vectors of its path texts (same encoder),
            whose names are lent to the tags (:mod:`tagindex.adapt.graft`); needs the title match.
        graft_exclude: (source category id, tag id) pairs never lent (a merchandiser's review).

    Raises:
        ValueError: ``graft`` without the title match (``lexical_weight`` 0), or an exclusion
            naming an id that is not there.
    """
    start = time.perf_counter()
    if graft is not None and params.lexical_weight <= 0:
        raise ValueError("grafting an outside taxonomy needs the title match (lexical_weight > 0)")
    texts = list(texts)
    parents = parent_rows(tags)
    hierarchy, leaves_only = params.decoding(parents)
    # Settled once: every later step (graft placement, each round's adjuster, the cap) reads these.
    params = replace(
        params,
        hierarchy=hierarchy,
        leaves_only=leaves_only,
        hubness_weight=params.resolved_hubness_weight(tags),
        occurrence_cap=params.resolved_occurrence_cap(tags),
    )
    skipped = params.hub_skip(n_rankable(parents, leaves_only), len(catalog))
    report: dict[str, Any] = {
        "n_catalog": len(catalog),
        "n_tags": len(tags),
        "decoding": {"hierarchy": hierarchy, "leaves_only": leaves_only},
        "hub_statistics": {
            "hubness_weight": params.hubness_weight,
            "occurrence_cap": params.occurrence_cap,
            "skipped": skipped,
            "unlevelled_categories": unlevelled_categories(tags),
        },
        "rounds": [],
    }
    text_vectors = np.array(tag_vectors, dtype=np.float32, copy=True)
    # The title match depends on names and titles only: computed once, sparse (n, tags).
    lexical = lexicon = None
    if params.lexical_weight > 0:
        lexicon = tag_lexicon(tags, params)
        if graft is not None:
            report["graft"] = graft_lexicon(lexicon, tags, tag_vectors, *graft, params, graft_exclude)
        lexical = lexicon.scores(catalog_texts, params.lexical_other_word)
        matched = float((lexical.getnnz(axis=1) > 0).mean()) if len(catalog) else 0.0
        report["lexical"] = {"titles_matched": round(matched, 4)}
    if params.enrich and len(catalog):
        adjuster = fit_adjuster(tags, catalog, text_vectors, params, lexicon)
        labels, margin = pseudo_labels(*score_catalog(adjuster, catalog, text_vectors, lexical=lexical))
        terms = mine_terms(
            catalog_texts,
            labels,
            margin,
            texts,
            params.enrich_products,
            params.enrich_terms,
            params.enrich_min_share,
        )
        changed = [i for i, t in enumerate(terms) if t]
        kept = 0
        if changed:
            candidates = [enriched_text(texts[i], terms[i]) for i in changed]
            fresh = encode(candidates)
            ok = drift_guard(text_vectors[changed], fresh, params.enrich_min_cos)
            for j, i in enumerate(changed):
                if ok[j]:
                    texts[i] = candidates[j]
                    text_vectors[i] = fresh[j]
                    kept += 1
        report["enrich"] = {
            "tags_with_terms": len(changed),
            "kept": kept,
            "rejected_by_drift_guard": len(changed) - kept,
            "examples": [texts[i] for i in changed[:5]],
        }
    vectors = text_vectors
    graph = mutual_knn(catalog, params.propagate_k) if params.propagate and len(catalog) > 1 else None
    previous: np.ndarray | None = None
    labels = np.full(len(catalog), -1, dtype=np.int64)
    mask = np.zeros(len(catalog), dtype=bool)
    for r in range(params.rounds if len(catalog) else 0):
        adjuster = fit_adjuster(tags, catalog, vectors, params, lexicon)
        labels, margin = pseudo_labels(*score_catalog(adjuster, catalog, vectors, lexical=lexical))
        agreement = None if previous is None else float((labels == previous).mean())
        used, strength = labels, margin
        if graph is not None:
            seeds = np.where(confident(labels, margin, params.confident_share), labels, -1)
            used, strength = spread(*graph, seeds, params.propagate_alpha, params.propagate_iterations)
        mask = confident(used, strength, params.confident_share) & (used >= 0)
        vectors, counts = prototypes(
            text_vectors,
            catalog,
            used,
            mask,
            parents,
            params.prototype_weight,
            params.prototype_shrinkage,
        )
        report["rounds"].append(
            {
                "round": r + 1,
                "agreement_with_previous": agreement,
                "confident_products": int(mask.sum()),
                "tags_with_prototype": int((counts > 0).sum()),
                "distinct_pseudo_labels": int(len(np.unique(labels))),
            }
        )
        logger.info(
            "adapt round %d: agreement with the previous round %s, %d confident products, "
            "%d tags with a prototype, %d distinct pseudo-labels",
            r + 1,
            "-" if agreement is None else f"{agreement:.4f}",
            report["rounds"][-1]["confident_products"],
            report["rounds"][-1]["tags_with_prototype"],
            report["rounds"][-1]["distinct_pseudo_labels"],
        )
        previous = labels
        if agreement is not None and agreement >= params.min_agreement:
            break
    adjuster = fit_adjuster(tags, catalog, vectors, params, lexicon)
    if params.occurrence_cap and len(catalog):
        if skipped:
            report["occurrence_cap"] = {"skipped": skipped}
        else:
            report["occurrence_cap"] = cap_occurrences(adjuster, catalog, vectors, params, lexical)
    report["seconds"] = round(time.perf_counter() - start, 2)
    return AdaptResult(vectors, texts, adjuster, labels, mask, report)


def encode_source(index: TagIndex, graft: Sequence[Tag]) -> tuple[list[Tag], np.ndarray] | None:
    """An outside taxonomy's categories and the unit vectors of their path texts, encoded like the
    index's tags (None when it has no categories)."""
    # Values (`convert shopify --include all`) are not kinds of anything: categories only.
    categories = [t for t in graft if t.kind != "attribute_value"]
    if not categories:
        logger.warning("graft: the outside taxonomy has no categories; nothing is lent")
        return None
    by_id = {t.id: t for t in categories}
    vectors = index.encoder.encode([tag_text(t, by_id, index.params.text) for t in categories])  # (n, dim)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return categories, vectors


def title_match_index(
    index: TagIndex,
    params: AdaptParams,
    graft: Sequence[Tag] | None = None,
    graft_exclude: Collection[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Gives a plain index the product-type match (and the ``graft``'s lent names) without a
    catalog: cosine plus ``params.lexical_weight`` x the match x the product's score spread, nothing
    fitted (``tagindex index --title-match``). Sets ``index.adjuster`` and returns a report.

    Raises:
        ValueError: ``params.lexical_weight`` is not above 0.
    """
    if params.lexical_weight <= 0:
        raise ValueError("the title match needs a weight above 0")
    tags = index.tags
    # Leaves only with path aggregation on a fixed-level tree (GS1), every tag on a ragged one.
    hierarchy, leaves_only = params.decoding(parent_rows(tags))
    requested = params  # what the manifest records, as `adapt` records it; the choice is in "decoding"
    params = replace(params, hierarchy=hierarchy, leaves_only=leaves_only)
    lexicon = tag_lexicon(tags, params)
    report: dict[str, Any] = {
        "method": "title match only (no catalog)",
        "decoding": {"hierarchy": hierarchy, "leaves_only": leaves_only},
    }
    source = encode_source(index, graft) if graft is not None else None
    if source is not None:
        vectors = np.stack([index.tag_vector(t.id) for t in tags])  # (tags, dim)
        report["graft"] = graft_lexicon(lexicon, tags, vectors, *source, params, graft_exclude)
    n = len(tags)
    index.adjuster = ScoreAdjuster.for_tags(
        tags,
        np.zeros(n, dtype=np.float32),
        np.ones(n, dtype=np.float32),
        params.hierarchy_weight if hierarchy else 1.0,
        leaves_only,
        {
            "method": report["method"],
            "n_catalog": 0,
            "adapt_params": requested.to_dict(),
            "decoding": report["decoding"],
        },
        params.lexical_weight,
        params.lexical_other_word,
        params.lexical_generic_df,
        lexicon,
    )
    return report


def adapt(
    tags: Sequence[Tag],
    products: Sequence[Product],
    params: AdaptParams | None = None,
    index_params: TagIndexParams | None = None,
    model: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    encoder: Encoder | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    show_progress: bool = False,
    graft: Sequence[Tag] | None = None,
    graft_exclude: Collection[tuple[str, str]] = (),
) -> tuple[TagIndex, dict[str, Any]]:
    """Builds a TagIndex adapted to an unlabelled catalog (product ``tags`` are never read).

    Args:
        tags: The tag vocabulary.
        products: The unlabelled catalog.
        params: Adaptation settings.
        index_params: Index settings (encoder, text); ``model`` overrides the encoder model.
        model: Encoder model directory to start from (e.g. a model fine-tuned on other sources).
        cache_dir: Product vector cache.
        encoder: An already loaded encoder for ``index_params.encoder`` (reused, not reloaded); the
            fine-tuned encoders of later rounds are loaded from their directories.
        work_dir: Where fine-tuned encoders are written (a temporary directory when omitted).
        show_progress: Progress bars while encoding.
        graft: An outside category taxonomy (e.g. Shopify's) whose names are lent to the tags they
            match (:mod:`tagindex.adapt.graft`); its path texts are encoded with the index's encoder.
            Tags of kind ``attribute_value`` in it are left out.
        graft_exclude: (source category id, tag id) pairs never lent (``--graft-exclude``).

    Returns:
        The adapted index (save it with ``index.save``) and a JSON-ready report.
    """
    params = params or AdaptParams()
    index_params = TagIndexParams.from_dict((index_params or TagIndexParams()).to_dict())
    if model is not None:
        index_params.encoder.model = model
    if not products:
        raise ValueError("adapt needs at least one catalog product")
    start = time.perf_counter()
    unlabelled = [Product(p.id, p.title, p.description, p.attributes) for p in products]  # labels dropped
    # Self-training reads titles only: a shop's category is evidence about its own product when it
    # is tagged (TagIndex.match_texts), too noisy to move the tags' prototypes (session 17).
    titles = [match_text(p.title) for p in unlabelled]
    report: dict[str, Any] = {"params": params.to_dict(), "finetune": []}
    for ft_round in range(params.finetune_rounds + 1):
        index = TagIndex.build(
            tags, index_params, encoder=encoder if ft_round == 0 else None, show_progress=show_progress
        )
        by_id = index.by_id
        texts = [tag_text(t, by_id, index_params.text) for t in index.tags]
        catalog = index.encode_products(unlabelled, cache_dir=cache_dir, show_progress=show_progress)
        source = encode_source(index, graft) if graft is not None else None
        result = adapt_vectors(
            index.tags,
            texts,
            np.stack([index.tag_vector(t.id) for t in index.tags]),
            catalog,
            titles,
            params,
            index.encoder.encode,
            source,
            graft_exclude,
        )
        report["adapt"] = result.report
        if ft_round == params.finetune_rounds:
            break
        from tagindex.train import TrainParams, train

        if work_dir is None:
            # Not deleted on return: the index loads its encoder from here until it is saved (which
            # copies the encoder into the index directory).
            work_dir = tempfile.mkdtemp(prefix="tagindex-adapt-")
        model_dir = Path(work_dir) / f"finetuned-{ft_round + 1}"
        row_tags = index.tags
        pseudo = [
            Product(p.id, p.title, p.description, p.attributes, [row_tags[int(lab)].id])
            for p, lab, ok in zip(unlabelled, result.labels, result.confident, strict=True)
            if ok and lab >= 0
        ]
        train_params = TrainParams(
            seed=params.seed, epochs=1, max_products=params.finetune_max_products, batch_size=32
        )
        ft = train(pseudo, tags, model_dir, index_params.encoder.model, train_params, index_params)
        report["finetune"].append(
            {
                "round": ft_round + 1,
                "pseudo_labelled": len(pseudo),
                "best_epoch": ft.best_epoch,
                "seconds": ft.seconds,
            }
        )
        index_params.encoder.model = str(model_dir)
    index.replace_vectors(result.tag_vectors, result.texts)
    index.adjuster = result.adjuster
    index.adjuster.info["adapt_params"] = params.to_dict()
    index.adjuster.info["report"] = {k: v for k, v in result.report.items() if k != "seconds"}
    report["seconds"] = round(time.perf_counter() - start, 2)
    if params.finetune_rounds:
        report["finetune_dir"] = str(work_dir)
    return index, report
