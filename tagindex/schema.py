"""Typed records that flow through the pipeline: products, tags and tagging results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

AttributeValue = str | list[str]


@dataclass
class Product:
    """A catalog item to be tagged.

    Attributes:
        id: Unique product id.
        title: Product title; never empty.
        description: Free text, may be empty.
        attributes: Attribute name -> value (or list of values).
        tags: Gold tag ids (training and evaluation only).
    """

    id: str
    title: str
    description: str = ""
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Tag:
    """A vocabulary entry: category, attribute value or descriptive keyword.

    Attributes:
        id: Unique tag id.
        name: Human-readable name; never empty.
        description: Optional longer text (e.g. the attribute's definition).
        parent: Id of the parent tag, or None for roots.
        kind: Free label such as ``category``, ``attribute_value`` or ``keyword``.
        synonyms: Alternative names.
        names: The name in other languages, keyed by language tag (``{"zh-CN": "靴子"}``); empty
            for single-language vocabularies. ``name`` stays the name the index encodes.
    """

    id: str
    name: str
    description: str = ""
    parent: str | None = None
    kind: str = "tag"
    synonyms: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.names:
            del out["names"]  # files of single-language vocabularies stay as they were
        return out

    def name_in(self, language: str | None) -> str:
        """The name in ``language`` (exact tag, then same primary language: ``zh`` finds ``zh-CN``).

        Falls back to :attr:`name` when the tag has no name in that language or ``language`` is None.
        """
        if not language or not self.names:
            return self.name
        wanted = language.casefold()
        for key, value in self.names.items():
            if key.casefold() == wanted:
                return value
        primary = wanted.split("-")[0]
        for key, value in self.names.items():
            if key.casefold().split("-")[0] == primary:
                return value
        return self.name


@dataclass
class TagScore:
    """One candidate tag for a product."""

    tag: str
    score: float
    name: str = ""
    ancestor_of: str | None = None  # set when the tag was added as an ancestor of a ranked tag

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tag": self.tag, "score": round(float(self.score), 6)}
        if self.name:
            out["name"] = self.name
        if self.ancestor_of is not None:
            out["ancestor_of"] = self.ancestor_of
        return out


@dataclass
class TagResult:
    """Ranked tags for one product, best first."""

    id: str
    tags: list[TagScore]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tags": [t.to_dict() for t in self.tags]}


@dataclass(frozen=True)
class Limits:
    """Largest accepted input values, applied when rows are read (files, DataFrames, the service).

    Published in docs/limits.md; keep the two in step. Every limit is far above real catalogues
    (MWPD's longest title is 1,756 characters, its longest description 5,000) and far below sizes
    that exhaust memory in tokenisation.
    """

    id_chars: int = 256
    title_chars: int = 4_000
    description_chars: int = 100_000
    tag_name_chars: int = 1_000
    tag_description_chars: int = 10_000
    kind_chars: int = 64
    synonyms: int = 256
    synonym_chars: int = 1_000
    gold_tags: int = 1_000
    attributes: int = 256
    attribute_name_chars: int = 256
    attribute_value_chars: int = 4_000
    attribute_values: int = 256
    json_depth: int = 16
    line_chars: int = 4 * 1024 * 1024
    csv_field_chars: int = 1024 * 1024


LIMITS = Limits()
