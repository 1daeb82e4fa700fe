"""Typed settings of ``tagindex adapt``, stored in the adapted index's manifest."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from tagindex.adapt.hierarchy import fixed_depth, parent_rows
from tagindex.adapt.lexical import CATEGORY_ATTRIBUTES
from tagindex.config import _Params

if TYPE_CHECKING:
    from tagindex.schema import Tag


def unlevelled_categories(tags: Sequence[Tag]) -> bool:
    """Whether a vocabulary is categories without a fixed level: most tags of kind ``category``, and
    flat or a ragged tree (:func:`tagindex.adapt.hierarchy.fixed_depth` false). These are product
    classes whose prevalence is real (a common class is not a hub), unlike attribute values or
    keywords, and unlike a fixed-level classification's abstract classes (GS1's "Upper Body
    Wear/Tops"), where the hubness correction was measured to help."""
    if 2 * sum(t.kind == "category" for t in tags) <= len(tags):
        return False
    return not fixed_depth(parent_rows(tags))


@dataclass
class AdaptParams(_Params):
    """What `tagindex adapt` does to fit an index to an unlabelled catalog (no label is read).

    Each ingredient can be switched off for the ablation (``benchmarks/adapt_ablation.py``).
    Defaults were chosen on the AE->OA / OA->AE cross-dataset tasks (flat attribute vocabularies) and
    on 100 labelled MWPD *train* offers (seeded draw) standing for "a merchandiser checked 100
    products" (``benchmarks/adapt_ablation.py`` columns ``dev100``), never on MWPD validation;
    differences of a few points on 100 offers are within noise.
    """

    seed: int = 0

    def decoding(self, parents: np.ndarray) -> tuple[bool, bool]:
        """(hierarchy, leaves_only) for a vocabulary with these parent rows: the settings given,
        or, where they are None, on for a fixed-level classification and off for a ragged taxonomy
        (:func:`tagindex.adapt.hierarchy.fixed_depth`)."""
        fixed = fixed_depth(parents) if self.hierarchy is None or self.leaves_only is None else False
        hierarchy = fixed if self.hierarchy is None else self.hierarchy
        leaves_only = fixed if self.leaves_only is None else self.leaves_only
        return hierarchy, leaves_only

    def resolved_hubness_weight(self, tags: Sequence[Tag]) -> float:
        """The hubness strength used for this vocabulary: the one given, else 0 for categories
        without a fixed level (:func:`unlevelled_categories`: flat lists, Shopify's or Google's
        ragged trees), 0.3 for any other hierarchy (GS1) and 1.0 for any other flat vocabulary
        (attribute values, keywords)."""
        if self.hubness_weight is not None:
            return self.hubness_weight
        if unlevelled_categories(tags):
            return 0.0
        return 0.3 if any(t.parent is not None for t in tags) else 1.0

    def resolved_occurrence_cap(self, tags: Sequence[Tag]) -> bool:
        """Whether the k-occurrence cap is fitted: as given, else off for categories without a
        fixed level only."""
        return self.occurrence_cap if self.occurrence_cap is not None else not unlevelled_categories(tags)

    def hub_skip(self, n_rankable: int, n_catalog: int) -> str | None:
        """Why the catalog statistics against hubs (hubness correction, k-occurrence cap) are
        skipped for this vocabulary and catalog size; None when they run."""
        min_tags = self.hub_min_tags
        if min_tags is None:
            min_tags = math.ceil(self.occurrence_k / self.occurrence_limit - 1e-9)
        if n_rankable < min_tags:
            return (
                f"{n_rankable} rankable tags, fewer than {min_tags}: an average tag is in more than "
                f"{self.occurrence_limit:g} of the top {self.occurrence_k} anyway"
            )
        if min_tags and n_catalog * self.occurrence_limit < 1:
            return f"{n_catalog} catalog products: too few for per-tag statistics"
        return None

    # 1. Hubness: per-tag normalisation over the catalog; stored in the index, applied at query time.
    hubness: Literal["none", "csls", "zscore"] = "zscore"
    hubness_k: int = 10  # catalog products per tag whose mean similarity is the CSLS penalty
    # Strength of the correction (CSLS penalty factor; z-score mixing share). None: 1.0 for a flat
    # vocabulary of attribute values or keywords (chosen on AE->OA / OA->AE), 0.3 for a fixed-level
    # hierarchy (chosen on 100 MWPD train offers), 0 for categories without a fixed level (a flat
    # list or a ragged tree): exclusive classes whose mean similarity is their prevalence, not
    # hubness (flat GS1 level 3, dev100 R@10 0.38 -> 0.56 without it and the cap; AE/OA titles ->
    # Shopify, acceptable top-1 0.672 -> 0.728; docs/benchmarks.md, "Session 14").
    hubness_weight: float | None = None
    # 1b. k-occurrence cap, fitted last on the final adapted scores (hubness, hierarchy, prototypes)
    # of the catalog: per-tag penalties (stored in the index) so that no tag is in the top
    # ``occurrence_k`` of more than max(occurrence_limit, occurrence_prevalence_factor x its
    # prevalence) of the catalog. Prevalence (no label): "tag", the tag's share of the catalog's
    # top-1 answers before the cap; "family", the summed share of the tags with its parent (siblings
    # confused with each other share their family's; a flat vocabulary: the same as "tag"). A tag
    # never above its cap keeps its scores. Default (family, factor 1.0) chosen on dev100 (R@1 0.16
    # -> 0.19, F1 0.408 -> 0.425: within the noise of 100 offers) with AE->OA / OA->AE unchanged;
    # the per-tag estimate ("tag", factor 1-3) cut dev100 F1 to 0.32-0.40 (MWPD's largest label wins
    # few top-1 answers, so it looks like a hub). benchmarks/results/adapt_occurrence.json.
    occurrence_cap: bool | None = None  # None: on, except for categories without a fixed level
    occurrence_k: int = 5
    occurrence_limit: float = 0.05
    occurrence_prevalence_factor: float = 1.0
    occurrence_prevalence: Literal["tag", "family"] = "family"
    occurrence_iterations: int = 100  # update steps at most (one pass over the catalog's candidates)
    # 1c. Where hubs can exist at all. With fewer rankable tags than ``occurrence_k /
    # occurrence_limit`` (100 with the defaults) an average tag already sits in more than
    # ``occurrence_limit`` of the top k, and the hubness correction and the cap remove the prior of
    # prevalent classes instead of hubs: flat GS1 level 1 (37 tags; MWPD's largest class is 44% of
    # it) fell from R@1 0.43 without them to 0.16 with them, level 2 (76 tags) from 0.40 to 0.16
    # (docs/benchmarks.md, "Session 14"). Below that size, and on catalogs of fewer than
    # 1 / occurrence_limit products, both are skipped. None: that rule; 0: never skipped.
    hub_min_tags: int | None = None
    # 2. Hierarchy-aware decoding: a tag's score mixes its own and its ancestors' (path aggregation),
    # and only leaves are ranked (their ancestors follow from the path). None (the default): on for
    # a fixed-level classification, whose products are classified at the bottom level (GS1:
    # MWPD's gold is always a level-3 class), off for a ragged taxonomy whose inner categories are
    # product types themselves (Shopify's "Hats" above "Top Hats"); see :meth:`decoding`. On
    # Shopify->Google (gold at depths 1-7) leaves-only decoding lost R@1 0.847 -> 0.787 and R@10
    # 0.996 -> 0.886; on the judged demo offers 62 -> 55 of 100 (adapt_decoding.json).
    hierarchy: bool | None = None
    hierarchy_weight: float = 0.5  # weight of the tag's own score; the rest is its ancestors' mean
    leaves_only: bool | None = None
    # 2b. Product-type match (tagindex.adapt.lexical): a tag whose head noun is the title's head noun
    # ("... Pullover Hoodie - Gunmetal" -> "Hoodies"), or an attribute value all of whose words are in
    # the title, gets ``lexical_weight`` x the product's score spread added, in self-training, in the
    # cap's fit and at query time; 0 switches it off. Chosen on AE->OA / OA->AE and the Shopify demo
    # (w = 2: R@10 0.425 -> 0.572 / 0.336 -> 0.482; demo top-1 12 -> 27 of 50 judged acceptable); on
    # MWPD dev100 within noise (GS1 names are abstract: 20% of titles match). adapt_lexical.json.
    lexical_weight: float = 2.0
    lexical_other_word: float = 0.25  # strength when the tag's head is another word of the phrase
    lexical_generic_df: int = 5  # heads of more tags than this are generic unless modifiers match
    # A tag with modifiers, none of them in the title, matches at most this share ("Water Polo" for
    # a "... Polo" shirt, "Twist Ties" for a necktie; 1.0 before session 15). Chosen on the AE/OA
    # titles -> Shopify check (acceptable top-1 0.728 -> 0.763) and Shopify->Google (R@1 0.849 ->
    # 0.867); MWPD dev100 within noise (transfer + graft, 3 seeds: 0.55 / 0.54 / 0.56 -> 0.56 / 0.55
    # / 0.61); docs/benchmarks.md, "Session 15".
    lexical_missing_modifiers: float = 0.5
    # A tag the title's head names matches at most this share when the title names a kind of that
    # head that the tag does not (costume "Masks" for "Face Mask", where "Fashion Face Masks" names
    # the kind; 1.0 before session 16). Chosen on the AE/OA titles -> Shopify check (acceptable
    # top-1 0.763 -> 0.797); Shopify->Google, MWPD and AE/OA within 0.2 points; the judged demo
    # unchanged (138 of 200). docs/benchmarks.md, "Session 16".
    lexical_unnamed_kind: float = 0.5
    # When a product is tagged and its title names no tag fully, a tag its own category (its shop's
    # breadcrumb, "... Plumbing > Sump Pumps") names fully matches at this strength (0: never
    # read). Not read in self-training. Chosen on MWPD dev100 (+ graft: R@1 0.50 -> 0.54, MiniLM
    # 0.19 -> 0.21); AE/OA unchanged; docs/benchmarks.md, "Session 17".
    lexical_category: float = 0.5
    # The product attributes that hold that category, the first one a product has counts.
    lexical_category_attributes: list[str] = field(default_factory=lambda: list(CATEGORY_ATTRIBUTES))
    # 2c. Taxonomy grafting (tagindex.adapt.graft; only with ``adapt --graft TAGS``): an outside
    # category taxonomy's names are lent to the target tags they name (head noun and all modifiers)
    # and that are among the category's ``graft_top_k`` nearest by vector, with their descendants, and matched
    # against titles like the tag's own name at ``graft_strength``. Chosen on MWPD dev100 with the
    # Shopify taxonomy (top_k 3 / 5 and strength 0.5 / 1 within noise of each other; top_k 1 loses
    # most of the gain); AE->OA / OA->AE unchanged. adapt_graft.json.
    graft_top_k: int = 3
    graft_strength: float = 1.0
    # 3. Tag text enrichment with class-indicative terms mined from each tag's nearest products. Off
    # since session 14: with the title match and self-training it no longer pays anywhere (MWPD
    # dev100 R@1 / F1 0.16 / 0.431 -> 0.20 / 0.503 without it; transfer + graft dev100 within
    # noise; AE->OA / OA->AE unchanged; AE/OA titles -> Shopify 0.609 -> 0.672 acceptable top-1;
    # docs/benchmarks.md, "Session 14").
    enrich: bool = False
    enrich_products: int = 30  # most confident catalog products per tag that are mined
    enrich_terms: int = 5  # terms appended to a tag's text at most
    enrich_min_share: float = 0.2  # a term must occur in this share of the tag's mined products
    enrich_min_cos: float = 0.8  # drift guard: the enriched text's vector must stay this close
    # 4. Self-training: confident pseudo-labels -> tag prototypes (and optionally a fine-tuned encoder).
    rounds: int = 3  # prototype rounds at most; stops early once the pseudo-labels stop changing
    prototype_weight: float = 0.5  # weight of the pseudo-labelled centroid in a tag's vector
    prototype_shrinkage: float = 5.0  # products at which a tag's centroid weighs prototype_weight/2
    confident_share: float = 0.5  # share of each tag's assigned products (by margin) kept as confident
    min_agreement: float = 0.98  # stop when this share of the catalog keeps its pseudo-label
    finetune_rounds: int = 0  # contrastive fine-tuning rounds of the bi-encoder on pseudo-labels
    finetune_max_products: int = 2000
    # 6. Label propagation over the catalog's mutual-kNN graph before the prototypes are formed.
    propagate: bool = False
    propagate_k: int = 10
    propagate_alpha: float = 0.8
    propagate_iterations: int = 20
