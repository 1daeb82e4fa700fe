"""Request and response bodies of the HTTP API, with the examples shown in the OpenAPI document."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from tagindex.schema import Product, Tag

# Strict: JSON true is not a number and 1.5 is not an integer; unknown fields are typos, not noise.
_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

# Limits that do not depend on the settings (those that do -- text length, batch size, top_k, rerank
# depth, tags per request -- are checked by the routers and written into the OpenAPI document by
# ``tagindex.service.routers.deps.publish_limits``). docs/service-limits.md lists them all.
MAX_ID_CHARS = 512
MAX_NAME_CHARS = 500
MAX_KIND_CHARS = 64
MAX_SYNONYMS = 100
MAX_SYNONYM_CHARS = 200
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_VALUES = 100
MAX_ATTRIBUTE_NAME_CHARS = 200
MAX_INT = 2**63 - 1  # SQLite's INTEGER and every id the service hands out fit in a signed 64-bit int

# Tag ids travel in URL paths (``/v1/tags/{id}``, ``/v1/tags/{id}/similar``), so an id must read back
# from its own URL: no control characters, no empty, "." or ".." segments, no blank at either end of
# a segment, and none of the route words the path would be mistaken for (checked in ``check_tag_id``).
_SEGMENT = r"[^\x00-\x1f\x7f/\s](?:[^\x00-\x1f\x7f/]*[^\x00-\x1f\x7f/\s])?"  # no blank ends, no "/"
TAG_ID_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
RESERVED_TAG_IDS = frozenset({"duplicates", "similar"})
KIND_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
NOT_BLANK = r"\S"  # JSON Schema patterns search, so this means "has a non-space character"

TagId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=TAG_ID_PATTERN)]
AttributeName = Annotated[str, StringConstraints(max_length=MAX_ATTRIBUTE_NAME_CHARS)]
AttributeValue = str | Annotated[list[str], Field(max_length=MAX_ATTRIBUTE_VALUES)]
Synonym = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SYNONYM_CHARS, pattern=NOT_BLANK)]


def check_tag_id(tag_id: str) -> str:
    """Refuses ids the API could store but never serve back (the pattern covers the rest).

    Raises:
        ValueError: The id, or its last path segment, is a route word ("duplicates", "similar"), or
            a segment is "." or "..".
    """
    if any(segment in (".", "..") for segment in tag_id.split("/")):
        raise ValueError(f"tag id '{tag_id}' has a '.' or '..' segment, which URLs resolve away")
    if tag_id in RESERVED_TAG_IDS or tag_id.rsplit("/", 1)[-1] in RESERVED_TAG_IDS:
        raise ValueError(
            f"tag id '{tag_id}' is reserved: ids may not be or end in "
            + " or ".join(f"'{w}'" for w in sorted(RESERVED_TAG_IDS))
            + " (those URLs name other routes)"
        )
    return tag_id


def _no_lone_surrogates(value: Any, where: str = "body") -> None:
    """Raises ValueError for a string that cannot be written as UTF-8 (JSON's "\\ud800" escapes
    decode to lone surrogates, which no file, database or answer can hold)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} holds a lone UTF-16 surrogate (an invalid \\uXXXX escape)") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_lone_surrogates(k, where)
            _no_lone_surrogates(v, f"{where}.{k}" if isinstance(k, str) and k.isidentifier() else where)
    elif isinstance(value, list):
        for v in value:
            _no_lone_surrogates(v, where)


class RequestBody(BaseModel):
    """Base of the request bodies: text must be valid Unicode (checked before the fields)."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        _no_lone_surrogates(data)
        return data


_PRODUCT_EXAMPLE: dict[str, Any] = {
    "id": "5945",
    "title": "Victorian Silver Masonic Locket 1890",
    "description": "An oval locket has the Masons symbol of a pair of compasses and set square to the front.",
    "attributes": {"material": "silver"},
}


class ProductIn(BaseModel):
    """A product to tag. Without an id, one is derived from the text, so the same text keeps its id."""

    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [_PRODUCT_EXAMPLE]})

    id: str = Field(
        default="", max_length=MAX_ID_CHARS, description="your product id; derived from the text if empty"
    )
    title: str = Field(
        min_length=1,
        description="product title (required, not blank)",
        json_schema_extra={"pattern": NOT_BLANK},  # checked by _title_not_blank (its message is clearer)
    )
    description: str = Field(default="", description="free text; the index decides how much of it is read")
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES, description="name -> value(s)"
    )

    @model_validator(mode="after")
    def _title_not_blank(self) -> ProductIn:
        if not self.title.strip():
            raise ValueError("title must not be blank")
        return self

    def to_product(self) -> Product:
        pid = self.id or "text-" + hashlib.sha1(f"{self.title}\n{self.description}".encode()).hexdigest()[:12]
        return Product(
            id=pid, title=self.title, description=self.description, attributes=dict(self.attributes)
        )

    def text_length(self) -> int:
        return max([len(self.title), len(self.description), *(len(str(v)) for v in self.attributes.values())])


class TagRequest(RequestBody):
    """One product (``product``) or a batch (``products``) to tag; give exactly one of the two."""

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            "oneOf": [{"required": ["product"]}, {"required": ["products"]}],
            "examples": [
                {"product": _PRODUCT_EXAMPLE, "top_k": 5},
                {
                    "products": [_PRODUCT_EXAMPLE, {"id": "811", "title": "Ruby Reds superfood drink mix"}],
                    "top_k": 3,
                    "include_ancestors": True,
                    "explain": True,
                    "decide": True,
                    "accept_threshold": 0.5,
                },
                {
                    "product": _PRODUCT_EXAMPLE,
                    "top_k": 10,
                    "rerank": True,
                    "rerank_depth": 20,
                    "decide": True,
                },
            ],
        },
    )

    # Present means not null: the schema says "exactly one of the two keys" (oneOf below), so an
    # explicit null is refused rather than read as absent.
    product: ProductIn | SkipJsonSchema[None] = None
    products: list[ProductIn] | SkipJsonSchema[None] = Field(
        default=None, min_length=1, description="batch (at most the service's max_batch)"
    )
    top_k: int = Field(
        default=10, ge=1, le=MAX_INT, description="tags per product (at most the service's max_top_k)"
    )
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0, description="drop tags scoring below")
    include_ancestors: bool = Field(default=False, description="insert each tag's ancestors after it")
    explain: bool = Field(default=False, description="add an explanation to every tag")
    decide: bool = Field(default=False, description="add accept/review decisions")
    accept_threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="similarity to accept at (default: the service's)"
    )
    rerank: bool | None = Field(
        default=None,
        description="rescore candidates with the cross-encoder; default: on when a reranker is configured",
    )
    rerank_depth: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INT,
        description="candidates the reranker rescores (at most max_rerank_depth); implies rerank",
    )
    per_kind: str | None = Field(
        default=None,
        max_length=2000,
        description="per-kind limits and thresholds, KIND=LIMIT[@THRESHOLD] or KIND=@THRESHOLD joined "
        "by commas (e.g. 'category=1,keyword=5@0.4'); categories then form one path and attribute "
        "values one per attribute (as `tagindex tag --per-kind`)",
    )
    kind_norm: list[str] | None = Field(
        default=None,
        max_length=64,
        description="kinds whose scores are z-normalised per tag over the request's products (at least "
        "10); their per_kind threshold then reads z-scores",
    )
    category_title_weight: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="choose categories by this weight of the title's similarity plus the rest of the "
        "full text's",
    )

    @model_validator(mode="before")
    @classmethod
    def _present_means_given(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("product", "products"):
                if key in data and data[key] is None:
                    raise ValueError(f"'{key}' is null: leave it out instead")
        return data

    @model_validator(mode="after")
    def _one_of(self) -> TagRequest:
        if (self.product is None) == (self.products is None):
            raise ValueError("give exactly one of 'product' (one product) or 'products' (a batch)")
        return self

    def product_list(self) -> list[ProductIn]:
        return [self.product] if self.product is not None else list(self.products or [])


class Neighbour(BaseModel):
    tag: str
    name: str
    tag_similarity: float = Field(description="cosine of the two tags' vectors")
    product_similarity: float = Field(description="cosine of this product with the neighbour tag")
    margin: float = Field(description="suggested tag's similarity minus the neighbour's")


class WordEffect(BaseModel):
    word: str
    position: int = Field(description="word position in the text the reranker (or encoder) read")
    effect: float = Field(description="score drop when the word is left out")


class LabelledNeighbour(BaseModel):
    id: str
    title: str = Field(description="empty when the service was given no titles (TAGINDEX_LABELLED_PRODUCTS)")
    similarity: float | None = Field(description="bi-encoder cosine of the two products")


class Explanation(BaseModel):
    """Evidence for one tag; ``parts`` holds every score that went into it (open set of names)."""

    parts: dict[str, float] = Field(description="score parts, e.g. bi_encoder_similarity")
    path: list[str] = Field(description="names from the root to the tag")
    matched_terms: list[str] = Field(description="content words shared by product text and tag text")
    neighbours: list[Neighbour] = Field(description="the tag's nearest tags and how this product scores them")
    inherited_from: str | None = None
    notes: list[str] = Field(default_factory=list)
    words: list[WordEffect] = Field(
        default_factory=list,
        description="product words that matter most (drop in the reranker logit, or without a reranker in "
        "the bi-encoder similarity, when the word is left out)",
    )
    examples: list[LabelledNeighbour] = Field(
        default_factory=list, description="nearest labelled products (the index's exemplars) carrying the tag"
    )


class TagHit(BaseModel):
    tag: str = Field(description="tag id")
    name: str
    score: float = Field(
        description="the score tags are ranked by: the bi-encoder similarity, or after a rerank the "
        "reranker's probability (candidates beyond the rerank depth: scaled below the reranked ones)"
    )
    path: list[str] = Field(default_factory=list, description="names from the root to the tag")
    ancestor_of: str | None = Field(default=None, description="set when added as an ancestor of this tag")
    decision: Literal["accept", "review"] | None = None
    reason: str | None = None
    explanation: Explanation | None = None
    bi_encoder_score: float | None = Field(
        default=None, description="first-stage (bi-encoder) score; set when a rerank stage is configured"
    )
    rerank_score: float | None = Field(
        default=None,
        description="the rerank stage's logit: the cross-encoder's, fused with the bi-encoder score when the "
        "reranker carries fusion weights (None beyond the rerank depth or without rerank)",
    )
    cross_encoder_score: float | None = Field(default=None, description="the cross-encoder's own logit")
    probability: float | None = Field(default=None, description="calibrated probability (with a calibration)")


class AssignedTag(BaseModel):
    tag: str
    name: str
    path: list[str]
    probability: float = Field(description="calibrated probability (an added ancestor: its descendant's)")
    level: int = Field(description="depth in the hierarchy, 0 = root")
    ancestor_of: str | None = Field(default=None, description="assigned because this descendant was")


class ProductResult(BaseModel):
    id: str
    tags: list[TagHit]
    encoded_text: str | None = Field(default=None, description="the text the encoder read (with explain)")
    assigned: list[AssignedTag] | None = Field(
        default=None,
        description="the calibrated decision (hierarchy-consistent), when a calibration is configured and "
        "can read this request's scores",
    )


class TagResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "id": "5945",
                            "tags": [
                                {
                                    "tag": "64010100_Jewellery",
                                    "name": "Jewellery",
                                    "score": 0.48,
                                    "path": ["Personal Accessories", "Jewellery"],
                                }
                            ],
                        }
                    ],
                    "index_version": 0,
                    "elapsed_ms": 12.3,
                }
            ]
        }
    )

    results: list[ProductResult]
    index_version: int = Field(description="bumped by every tag added or retired since start-up")
    explainer: str | None = None
    decider: str | None = None
    elapsed_ms: float
    reranked: bool = Field(default=False, description="whether the cross-encoder rescored the candidates")
    rerank_depth: int | None = Field(default=None, description="candidates rescored per product")


class SimilarTextRequest(RequestBody):
    model_config = ConfigDict(
        **_STRICT, json_schema_extra={"examples": [{"text": "silver locket", "top_k": 5}]}
    )

    text: str = Field(
        min_length=1,
        description="free text: a tag name you have in mind, a product, a query (at most max_text_chars)",
    )
    top_k: int = Field(default=10, ge=1, le=MAX_INT, description="at most the service's max_top_k")


class ScoredTag(BaseModel):
    tag: str
    name: str
    score: float
    path: list[str]


class SimilarResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "query": "64010100_Jewellery",
                    "tags": [
                        {
                            "tag": "64010000_Personal Accessories",
                            "name": "Personal Accessories",
                            "score": 0.41,
                            "path": ["Personal Accessories"],
                        }
                    ],
                }
            ]
        }
    )

    query: str
    tags: list[ScoredTag]


class DuplicatePair(BaseModel):
    a: str
    a_name: str
    a_path: list[str]
    b: str
    b_name: str
    b_path: list[str]
    score: float = Field(description="cosine similarity of the two tags' vectors")
    relation: str = Field(description="other, or sibling (same parent) when siblings are included")
    name_similarity: float = Field(description="0..1, the names after normalisation (case, plurals, &)")
    names_equal: bool = Field(description="the same words in any order")
    path_similarity: float = Field(description="0..1, words the two ancestor paths share")
    shared_products: int | None = Field(description="labelled products carrying both (null: no exemplars)")
    evidence: float = Field(description="0..1, weighted mean of the parts above: the ranking key")
    reasons: list[str] = Field(description="the evidence in words")


class DuplicatesResponse(BaseModel):
    min_score: float
    total: int = Field(description="pairs at or above min_score (the list may be cut at limit)")
    pairs: list[DuplicatePair]
    include_siblings: bool = False
    index_version: int = Field(
        0, description="vocabulary version the scan belongs to (cached until it changes)"
    )


class TagInfo(BaseModel):
    id: str
    name: str
    path: list[str]
    parent: str | None
    kind: str
    description: str
    synonyms: list[str]


class TagIn(BaseModel):
    """A new vocabulary entry; its parent may be an existing tag or another tag in the same request."""

    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            "examples": [
                {
                    "id": "64010100_Lockets",
                    "name": "Lockets",
                    "parent": "64010100_Jewellery",
                    "kind": "category",
                    "synonyms": ["photo locket"],
                }
            ]
        },
    )

    id: TagId = Field(description="new tag id: readable back from /v1/tags/{id} (see the limits page)")
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=NOT_BLANK)
    description: str = Field(default="", description="at most max_text_chars")
    parent: TagId | None = Field(default=None, description="an existing tag or one added in this request")
    kind: str = Field(default="tag", min_length=1, max_length=MAX_KIND_CHARS, pattern=KIND_PATTERN)
    synonyms: list[Synonym] = Field(default_factory=list, max_length=MAX_SYNONYMS)

    @field_validator("id")
    @classmethod
    def _id_not_reserved(cls, value: str) -> str:
        return check_tag_id(value)

    def to_tag(self) -> Tag:
        return Tag(self.id, self.name, self.description, self.parent, self.kind, list(self.synonyms))


class AddTagsRequest(RequestBody):
    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            "examples": [
                {"tags": [{"id": "64010100_Lockets", "name": "Lockets", "parent": "64010100_Jewellery"}]}
            ]
        },
    )

    tags: list[TagIn] = Field(min_length=1, description="at most the service's max_new_tags")

    @model_validator(mode="after")
    def _no_parent_cycle(self) -> AddTagsRequest:
        # Existing tags cannot point at new ones, so a cycle can only run through this request.
        parents = {t.id: t.parent for t in self.tags}
        for start in parents:
            seen = [start]
            node = parents[start]
            while node is not None and node in parents:
                if node in seen:
                    loop = " -> ".join([*seen[seen.index(node) :], node])
                    raise ValueError(f"parent cycle: {loop}")
                seen.append(node)
                node = parents[node]
        return self


class ChangeResponse(BaseModel):
    changed: list[str] = Field(description="tag ids added or retired")
    n_tags: int
    index_version: int


class Judgement(BaseModel):
    model_config = _STRICT

    tag: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="tag id (must exist in the index)")
    action: Literal["accept", "reject", "add"] = Field(
        description="accept or reject a suggested tag, or add a tag the service missed"
    )
    score: float | None = Field(default=None, description="the score shown when the judgement was made")


class FeedbackRequest(RequestBody):
    model_config = ConfigDict(
        **_STRICT,
        json_schema_extra={
            "examples": [
                {
                    "product": _PRODUCT_EXAMPLE,
                    "judgements": [
                        {"tag": "64010100_Jewellery", "action": "accept", "score": 0.48},
                        {"tag": "53131100_Skin Care", "action": "reject", "score": 0.31},
                    ],
                    "user": "merchandiser-1",
                }
            ]
        },
    )

    product: ProductIn
    judgements: list[Judgement] = Field(min_length=1, max_length=1000)
    user: str | None = Field(default=None, max_length=200)
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackRow(BaseModel):
    id: int
    created: str
    product_id: str
    title: str
    description: str
    attributes: dict[str, Any]
    tag: str
    action: str
    score: float | None
    user: str | None
    comment: str | None
    index_fingerprint: str | None


class FeedbackResponse(BaseModel):
    stored: list[FeedbackRow]
    total: int = Field(description="feedback rows stored so far")


class FeedbackList(BaseModel):
    rows: list[FeedbackRow]
    total: int


class Health(BaseModel):
    status: str


class Info(BaseModel):
    index: dict[str, Any]
    limits: dict[str, int]
    accept_threshold: float | None
    explainer: str
    decider: str
    feedback_rows: int
    stage: dict[str, Any] | None = Field(
        default=None, description="the rerank / calibration stage (reranker fingerprint, depths), if any"
    )


class ErrorBody(BaseModel):
    detail: Any = Field(description="what was wrong, in words (or pydantic's list for 422 validation)")
