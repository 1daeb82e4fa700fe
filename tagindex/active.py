"""Active learning: which products a merchandiser should judge next so the index learns most.

:func:`review_queue` ranks a pool of unjudged products in three passes, each pick with a reason:

1. **Coverage of unseen and tail tags.** For each tag with fewer than ``tail_max`` exemplars that
   is some pool product's top suggestion, the product that suggests it most confidently is a
   candidate (a judgement there either confirms a first example of the tag or corrects the text
   match). At most ``coverage_share`` of the queue, rarest tags first.
2. **Uncertainty and novelty.** Every other product gets a value from its margin (top-1 minus top-2
   score: a small margin means the index hesitates between two tags) and its distance to the
   nearest labelled product (far from every exemplar: nothing teaches the index about that region
   yet), as the mean of the two percentile ranks over the pool.
3. **Diversity.** The ``candidate_factor * n`` most valuable products are clustered into as many
   groups as picks remain (seeded k-means on their vectors, cosine), and each cluster gives its
   most valuable member, so the queue holds no near-duplicates (cluster-then-pick, as in
   Cluster-Margin, Citovsky et al. 2021). Any product within ``duplicate_cos`` of one already
   picked is skipped as well.

The queue is deterministic for a given index, pool and seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tagindex.schema import Product, TagScore

if TYPE_CHECKING:
    from tagindex.index import TagIndex

logger = logging.getLogger(__name__)


@dataclass
class QueueParams:
    """Knobs of :func:`review_queue` (see the module docstring)."""

    seed: int = 13
    coverage_share: float = 0.3  # at most this share of the queue goes to unseen/tail-tag coverage
    tail_max: int = 2  # tags with fewer exemplars than this count as tail for coverage
    candidate_factor: int = 6  # candidates considered for diversity per remaining pick
    duplicate_cos: float = 0.92  # products this close to a pick are near-duplicates
    kmeans_iters: int = 10
    # "typical": cluster the pool into (labelled + picks) groups and take the most typical product
    # of the largest groups without a labelled product, weighted by the index's hesitation there
    # (TypiClust, Hacohen et al. 2022, with uncertainty); "margin": the most hesitant products,
    # diversified by clustering (Cluster-Margin).
    method: str = "typical"
    uncertainty_floor: float = 0.5  # cluster weight = size * (floor + mean uncertainty of its products)
    suggestions: int = 5  # suggested tags shown per product


@dataclass
class ReviewPick:
    """One product of the queue: its suggestions and why it was chosen."""

    id: str
    tags: list[TagScore]
    reason: str
    kind: str  # "coverage", "typical", "uncertain" or "novel"
    value: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tags": [t.to_dict() for t in self.tags],
            "reason": self.reason,
            "kind": self.kind,
            "value": round(float(self.value), 6),
            "details": self.details,
        }


def _percentile_rank(x: np.ndarray) -> np.ndarray:
    """Rank of each value in [0, 1] (ties share the mean rank)."""
    if len(x) <= 1:
        return np.ones_like(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x))
    # Average ties so equal values get equal ranks whatever their input order.
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse] / (len(x) - 1)


def _kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means with k-means++ seeding; returns the cluster of each row (n,)."""
    n = len(x)
    centers = [int(rng.integers(n))]
    dist = 1.0 - x @ x[centers[0]]
    for _ in range(1, k):
        probs = np.maximum(dist, 0) ** 2
        total = probs.sum()
        nxt = int(rng.choice(n, p=probs / total)) if total > 0 else int(rng.integers(n))
        centers.append(nxt)
        dist = np.minimum(dist, 1.0 - x @ x[nxt])
    c = x[centers].copy()  # (k, dim)
    assign = np.full(n, -1, dtype=np.int64)
    for _ in range(iters):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
        sums = np.zeros_like(c)
        np.add.at(sums, assign, x)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        c = np.where(norms > 1e-12, sums / np.maximum(norms, 1e-12), c)  # empty clusters keep their centre
    return assign


def _typicality(x: np.ndarray, k: int = 20) -> np.ndarray:
    """Per row, the mean cosine to its ``k`` nearest other rows (n,): high in dense regions."""
    if len(x) < 2:
        return np.ones(len(x))
    sims = x @ x.T  # (n, n)
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(x) - 1)
    top = -np.partition(-sims, k - 1, axis=1)[:, :k]
    return np.asarray(top.mean(axis=1))


def review_queue(
    index: TagIndex,
    products: Sequence[Product],
    n: int,
    vectors: np.ndarray | None = None,
    params: QueueParams | None = None,
    exclude: set[str] | None = None,
) -> list[ReviewPick]:
    """The ``n`` products of ``products`` whose judgement should teach ``index`` most (see module doc).

    Args:
        index: The index as it is now (its exemplars and judgements count as labelled).
        products: The pool.
        n: Queue length.
        vectors: Pool vectors (len(products), dim) from the index's encoder; encoded when omitted.
        params: Queue settings.
        exclude: Product ids never to pick (already judged); judged products of the index are
            always excluded.

    Returns:
        Picks in queue order (most valuable first).
    """
    p = params or QueueParams()
    rng = np.random.default_rng(p.seed)
    products = list(products)
    if vectors is None:
        vectors = index.encode_products(products)
    skip = set(exclude or ())
    if index.learned is not None:
        skip |= set(index.learned.products)
    skip |= set(index.exemplar_ids())
    keep = [i for i, q in enumerate(products) if q.id not in skip]
    if not keep or n <= 0:
        return []
    pool = [products[i] for i in keep]
    x = np.asarray(vectors[keep], dtype=np.float32)  # (m, dim)

    scorer = index.scorer()
    depth = max(p.suggestions, 2)
    labelled = np.zeros((0, x.shape[1]), dtype=np.float32)
    if scorer is not None:
        scores, ids = scorer.top(x, depth)
        counts = dict(zip(scorer.targets, scorer.counts.tolist(), strict=True))
    else:  # the scores `tag` shows: an adapted index's (title match included), else cosine
        scores, ids = index.nearest_tags(x, depth, index.match_texts(pool))
        counts = {}
    margin = scores[:, 0] - scores[:, 1]  # (m,)
    # Cosine to the nearest labelled product (m,); 0 when nothing is labelled yet.
    if scorer is not None and scorer.ex_vectors is None:  # exemplar codes: the nearest through them
        sims = scorer.neighbours(x)[0][:, :1]  # (m, 1)
        has_labelled = sims.shape[1] > 0
        nearest = np.where(np.isfinite(sims[:, 0]), sims[:, 0], 0.0) if has_labelled else np.zeros(len(x))
        # Clusters count as covered by the seen tags' prototypes (one vector a tag, kept exactly).
        labelled = scorer.prototypes[scorer.counts > 0]
    else:
        if scorer is not None:
            assert scorer.ex_vectors is not None
            labelled = scorer.ex_vectors
        has_labelled = len(labelled) > 0
        nearest = np.max(x @ labelled.T, axis=1) if has_labelled else np.zeros(len(x), dtype=np.float32)
    uncertainty = 1.0 - _percentile_rank(margin)
    novelty = 1.0 - _percentile_rank(nearest) if has_labelled else np.ones(len(x))
    value = 0.5 * uncertainty + 0.5 * novelty  # (m,)
    names = {t.id: t.name for t in index.tags}

    def suggestions(i: int) -> list[TagScore]:
        return [TagScore(t, float(s), names.get(t, "")) for t, s in zip(ids[i], scores[i], strict=False)][
            : p.suggestions
        ]

    picks: list[ReviewPick] = []
    taken: list[int] = []

    def near_duplicate(i: int) -> bool:
        return bool(taken) and float(np.max(x[taken] @ x[i])) >= p.duplicate_cos

    # 1. coverage: rarest top suggestions first, the most confident product for each.
    n_cover = int(round(p.coverage_share * n))
    top1 = [row[0] for row in ids]
    best_for: dict[str, int] = {}
    for i, t in enumerate(top1):
        if counts.get(t, 0) < p.tail_max and (t not in best_for or scores[i, 0] > scores[best_for[t], 0]):
            best_for[t] = i
    order = sorted(best_for, key=lambda t: (counts.get(t, 0), -float(scores[best_for[t], 0]), t))
    for t in order:
        if len(picks) >= n_cover:
            break
        i = best_for[t]
        if near_duplicate(i):
            continue
        c = int(counts.get(t, 0))
        seen = "no exemplar" if c == 0 else f"only {c} exemplar{'s' if c > 1 else ''}"
        picks.append(
            ReviewPick(
                pool[i].id,
                suggestions(i),
                f"covers tag '{names.get(t, t)}' ({seen}): the product the index suggests it for most "
                f"confidently (score {scores[i, 0]:.3f})",
                "coverage",
                float(value[i]),
                {"tag": t, "exemplars": c, "score": float(scores[i, 0])},
            )
        )
        taken.append(i)

    # 2-3. uncertainty + novelty, diversified by clustering the best candidates.
    remaining = n - len(picks)
    if remaining > 0 and p.method == "typical":
        chosen = set(taken)
        k = min(len(x), len(labelled) + remaining)
        assign = _kmeans(x, k, p.kmeans_iters, rng)
        sums = np.zeros((k, x.shape[1]), dtype=np.float32)
        np.add.at(sums, assign, x)
        centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        covered = set(np.argmax(labelled @ centres.T, axis=1).tolist()) if len(labelled) else set()
        sizes = np.bincount(assign, minlength=k)
        hesitation = np.bincount(assign, weights=uncertainty, minlength=k) / np.maximum(sizes, 1)
        weight = sizes * (p.uncertainty_floor + hesitation)
        for c in sorted(
            (c for c in range(k) if c not in covered and sizes[c]), key=lambda c: (-weight[c], c)
        ):
            if len(picks) >= n:
                break
            members = np.flatnonzero(assign == c)
            members = members[[int(i) not in chosen for i in members]]
            if not len(members):
                continue
            typ = _typicality(x[members])
            i = int(members[int(np.argmax(typ))])
            if near_duplicate(i):
                continue
            a = names.get(ids[i][0], ids[i][0])
            b = names.get(ids[i][1], ids[i][1])
            picks.append(
                ReviewPick(
                    pool[i].id,
                    suggestions(i),
                    f"typical of a group of {int(sizes[c])} similar products with no labelled example "
                    "(largest and most hesitant groups first); "
                    f"the index hesitates there (mean uncertainty {hesitation[c]:.2f}; this product: "
                    f"margin {margin[i]:.3f} between '{a}' and '{b}')",
                    "typical",
                    float(weight[c]),
                    {
                        "cluster_size": int(sizes[c]),
                        "cluster_uncertainty": float(hesitation[c]),
                        "margin": float(margin[i]),
                        "nearest_labelled": float(nearest[i]),
                    },
                )
            )
            taken.append(i)
            chosen.add(i)
        remaining = n - len(picks)
    if remaining > 0:
        chosen = set(taken)
        cand = [int(i) for i in np.argsort(-value, kind="stable") if int(i) not in chosen]
        cand = cand[: max(remaining * p.candidate_factor, remaining)]
        k = min(remaining, len(cand))
        groups = _kmeans(x[cand], k, p.kmeans_iters, rng) if k > 1 else np.zeros(len(cand), np.int64)
        best: dict[int, int] = {}
        for pos, i in enumerate(cand):  # cand is sorted by value, so the first member of a group is its best
            best.setdefault(int(groups[pos]), i)
        ordered = sorted(best.values(), key=lambda i: -float(value[i]))
        leftovers = [i for i in cand if i not in set(ordered)]
        for i in ordered + leftovers:
            if len(picks) >= n:
                break
            if near_duplicate(i):
                continue
            kind = "uncertain" if uncertainty[i] >= novelty[i] else "novel"
            a = names.get(ids[i][0], ids[i][0])
            b = names.get(ids[i][1], ids[i][1])
            far = (
                f"nearest labelled product at cosine {nearest[i]:.2f}"
                if len(labelled)
                else "no labelled products yet"
            )
            picks.append(
                ReviewPick(
                    pool[i].id,
                    suggestions(i),
                    f"{kind}: margin {margin[i]:.3f} between '{a}' and '{b}' "
                    f"(more hesitant than {100 * uncertainty[i]:.0f}% of the pool); {far}; "
                    f"representative of a cluster of similar uncertain products",
                    kind,
                    float(value[i]),
                    {
                        "margin": float(margin[i]),
                        "nearest_labelled": float(nearest[i]),
                        "uncertainty": float(uncertainty[i]),
                        "novelty": float(novelty[i]),
                    },
                )
            )
            taken.append(i)
    logger.info(
        "review queue: %d picks (%d coverage) from a pool of %d",
        len(picks),
        sum(1 for q in picks if q.kind == "coverage"),
        len(pool),
    )
    return picks


def random_queue(
    products: Sequence[Product], n: int, seed: int, exclude: set[str] | None = None
) -> list[str]:
    """Ids of ``n`` products drawn uniformly (the baseline the benchmark compares against)."""
    ids = [q.id for q in products if q.id not in (exclude or set())]
    rng = np.random.default_rng(seed)
    return [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]
