"""Tag text enrichment: class-indicative terms mined from the catalog products nearest each tag.

For every tag, the catalog products it ranks first with the largest margin are read; a term is
class-indicative when it occurs in at least ``min_share`` of them and is rare in the catalog as a
whole (score: share x idf). The best terms are appended to the tag's text. Drift guard: the enriched
text is kept only when its vector stays within ``min_cos`` of the original text's vector, so a tag
whose nearest products are off-topic does not turn into a description of them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[^\W\d_]{3,}")
# Shop boilerplate and function words: frequent in titles, never indicative of a class.
STOPWORDS = frozenset(
    {
        "the",
        "and",
        "for",
        "with",
        "from",
        "this",
        "that",
        "your",
        "you",
        "our",
        "are",
        "not",
        "all",
        "new",
        "free",
        "buy",
        "sale",
        "shop",
        "size",
        "sizes",
        "pack",
        "set",
        "item",
        "items",
        "product",
        "products",
        "inch",
        "inches",
        "cm",
        "mm",
        "ml",
        "kg",
        "lbs",
        "per",
        "one",
        "two",
        "three",
        "each",
        "only",
        "more",
        "best",
        "top",
        "quality",
        "great",
        "high",
        "low",
        "price",
        "online",
        "delivery",
        "shipping",
        "uk",
        "usa",
        "eur",
        "gbp",
        "color",
        "colour",
        "black",
        "white",
        "red",
        "blue",
        "green",
        "grey",
        "gray",
        "pink",
        "yellow",
        "brown",
        "large",
        "small",
        "medium",
        "mens",
        "womens",
        "men",
        "women",
        "unisex",
        "kids",
    }
)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of three letters or more, stop words removed, in order, unique."""
    return list(dict.fromkeys(t for t in _TOKEN.findall(text.casefold()) if t not in STOPWORDS))


def mine_terms(
    texts: Sequence[str],
    labels: np.ndarray,
    strength: np.ndarray,
    tag_texts: Sequence[str],
    n_products: int,
    n_terms: int,
    min_share: float,
) -> list[list[str]]:
    """Class-indicative terms per tag.

    Args:
        texts: Catalog product texts (titles), one per product.
        labels: Pseudo-label (tag row) per product, -1 for none.
        strength: Confidence per product (higher is surer), e.g. the top-1 margin.
        tag_texts: Current tag texts (terms already in them are skipped).
        n_products: Most confident products mined per tag.
        n_terms: Terms kept per tag at most.
        min_share: Minimum share of the mined products a term must occur in.

    Returns:
        One list of terms per tag (empty when nothing qualifies).
    """
    product_tokens = [tokens(t) for t in texts]
    df = Counter(tok for toks in product_tokens for tok in toks)
    n_docs = max(len(texts), 1)
    out: list[list[str]] = [[] for _ in tag_texts]
    order = np.lexsort((-strength, labels))  # grouped by label, most confident first
    grouped: dict[int, list[int]] = {}
    for i in order.tolist():
        lab = int(labels[i])
        if lab >= 0 and len(grouped.setdefault(lab, [])) < n_products:
            grouped[lab].append(i)
    for lab, members in grouped.items():
        if len(members) < 2:
            continue
        local = Counter(tok for i in members for tok in product_tokens[i])
        own = set(tokens(tag_texts[lab]))
        need = max(2, math.ceil(min_share * len(members)))
        scored = [
            (count / len(members) * math.log(n_docs / df[tok]), tok)
            for tok, count in local.items()
            if count >= need and tok not in own and df[tok] < n_docs
        ]
        out[lab] = [tok for _, tok in sorted(scored, key=lambda x: (-x[0], x[1]))[:n_terms]]
    return out


def enriched_text(text: str, terms: Sequence[str]) -> str:
    """The tag text with mined terms appended (unchanged when there are none)."""
    return f"{text}; {', '.join(terms)}" if terms else text


def drift_guard(base: np.ndarray, enriched: np.ndarray, min_cos: float) -> np.ndarray:
    """True where the enriched vector stays within ``min_cos`` cosine of the base vector."""
    return np.asarray((base * enriched).sum(axis=1) >= min_cos)
