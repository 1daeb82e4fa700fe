"""Typed, serialisable parameter objects stored in every saved index's manifest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T", bound="_Params")

DEFAULT_MODEL = "packaged:all-MiniLM-L6-v2"


class _Params:
    """Mixin giving dataclasses ``to_dict``/``from_dict`` that reject unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            sub = known[name].type
            sub_cls = _NESTED.get(str(sub))
            kwargs[name] = (
                sub_cls.from_dict(value) if sub_cls is not None and isinstance(value, dict) else value
            )
        return cls(**kwargs)


# Attribute names shown to the encoders as the word they mean, where a data field's name would be
# read as words about the product: MWPD's scraped "breadcrumb" was read as bread crumbs (the Shopify
# demo's Bread Crumbs hub; docs/benchmarks.md, "Session 18").
ATTRIBUTE_LABELS = {"breadcrumb": "category"}


def check_attribute_labels(labels: object, where: str) -> None:
    """Raises TypeError unless ``labels`` maps attribute names to the words shown for them."""
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise TypeError(f"{where}: must map attribute names to words, e.g. {ATTRIBUTE_LABELS}")


def with_legacy_attribute_labels(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as saved before session 18 (no ``attribute_labels``) read as they were meant:
    attribute names shown as given ({}), so a saved model or index encodes as it did."""
    return params if "attribute_labels" in params else {**params, "attribute_labels": {}}


@dataclass
class TextParams(_Params):
    """How products and tags become encoder input.

    The description budget decides encoder speed (MiniLM: ~280 titles/s, ~50/s with 300 description
    characters on 2 idle cores). Zero-shot on 1,000 MWPD *training* offers the description added
    nothing (lvl3 recall@5 0.33 / 0.32 / 0.31 at 0 / 150 / 300 characters) at ~1.7x the encode
    time, so pure zero-shot users may set 0; 150 stays the default because matching against
    labelled products reads descriptions too.
    """

    description_chars: int = 150
    include_attributes: bool = True
    # How an attribute's name is shown to the encoder (ATTRIBUTE_LABELS). Indexes written before
    # session 18 read {}.
    attribute_labels: dict[str, str] = field(default_factory=lambda: dict(ATTRIBUTE_LABELS))
    tag_path: bool = True
    tag_description: bool = True
    tag_synonyms: bool = True

    def __post_init__(self) -> None:
        check_attribute_labels(self.attribute_labels, "text.attribute_labels")


@dataclass
class EncoderParams(_Params):
    """Which encoder backend and model to use."""

    backend: str = "sentence-transformers"
    model: str = DEFAULT_MODEL
    batch_size: int = 64
    max_seq_length: int = 128
    device: str | None = None
    # Render text in this language in English before encoding (tagindex.translate: CC-CEDICT senses
    # chosen to fit the index's English tag names), for English-only models; e.g. "zh-CN". None: off.
    translate: str | None = None
    # With translate: a Shopify product-taxonomy checkout whose attribute/value localisations join
    # the dictionary (product names; copied into the index, so the path is read only at build time).
    translate_glossary: str | None = None
    # A second encoder backend (e.g. "use-multilingual") that reads the original, untranslated text;
    # its unit vector is appended to the first's, the two scaled so that a cosine is
    # (1 - ensemble_weight) * first cosine + ensemble_weight * second cosine
    # (tagindex.encoders.EnsembleEncoder).
    ensemble_backend: str | None = None
    ensemble_weight: float = 0.5


@dataclass
class VectorIndexParams(_Params):
    """FAISS index type and its search/accuracy knobs."""

    kind: Literal["exact", "hnsw", "ivf"] = "exact"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None  # None: about 4 * sqrt(number of tags)
    ivf_nprobe: int = 16
    use_gpu: bool | None = None  # None: use a GPU when FAISS sees one
    # How FAISS stores tag vectors: float32 (4 bytes/dim), float16 (2) or int8 scalar-quantised (1).
    vector_format: Literal["float32", "float16", "int8"] = "float32"


@dataclass
class ExemplarParams(_Params):
    """How labelled products ("exemplars") stored in an index score tags (see tagindex.exemplars).

    Defaults were chosen on a dev split carved from MWPD train (``benchmarks/tune_exemplars.py``: 15% of
    train, seed 13, grid over k, temperature, vote weight and shrinkage; best mean weighted F1 over
    the three levels), never on validation.
    """

    k: int = 20  # nearest exemplars that vote
    temperature: float = 0.05  # softmax temperature over the neighbours' cosine similarities
    vote_weight: float = 0.5  # weight of the neighbour vote added to the similarity
    shrinkage: float = 2.0  # exemplar count at which a tag's prototype and its text weigh the same
    # Tags with few or no exemplars are matched by text alone, whose cosines run lower than prototype
    # cosines plus votes; these two terms put them back in the race (see tagindex.gate). They are
    # fitted on a simulated zero-shot split of the exemplars themselves when ``fit_gate`` is on.
    unseen_offset: float = 0.0  # added to a tag's score in proportion to its text share (1 - lam_t)
    parent_vote_weight: float = 0.0  # weight of the vote share of a tag's siblings (its parent's subtree)
    fit_gate: bool = True  # fit the two terms above whenever exemplars are added to an index
    gate_seen_budget: float = 0.05  # seen-tag recall@1 the gate may give up for unseen tags (simulated)
    # Few-shot regime: below ``few_shot_below`` exemplars (a cold index learning from its first
    # judgements: most tags have one exemplar or none) fewer neighbours vote and the vote weighs less;
    # ``k`` and ``vote_weight`` above were chosen with ~9,000 exemplars. Chosen on a dev split of MWPD
    # *train* after 300 active judgements, best mean of online and re-trained lvl3 R@1 over a grid
    # (k 3/5/8, vote weight 0.15/0.25/0.35, shrinkage 1/2/4): 0.616 -> 0.632 online, 0.716 -> 0.727
    # re-trained (docs/learning.md). 0 turns the regime off.
    few_shot_below: int = 2000
    few_shot_k: int = 5
    few_shot_vote_weight: float = 0.15

    def for_exemplars(self, n: int) -> ExemplarParams:
        """The settings that score an index holding ``n`` exemplars (the few-shot regime above)."""
        if n >= self.few_shot_below:
            return self
        return dataclasses.replace(self, k=self.few_shot_k, vote_weight=self.few_shot_vote_weight)


@dataclass
class TagIndexParams(_Params):
    """Everything a TagIndex needs to rebuild its answers."""

    text: TextParams = field(default_factory=TextParams)
    encoder: EncoderParams = field(default_factory=EncoderParams)
    index: VectorIndexParams = field(default_factory=VectorIndexParams)
    exemplars: ExemplarParams = field(default_factory=ExemplarParams)


_NESTED: dict[str, type[_Params]] = {
    "TextParams": TextParams,
    "EncoderParams": EncoderParams,
    "VectorIndexParams": VectorIndexParams,
    "ExemplarParams": ExemplarParams,
}
