"""tagindex: assign product tags with a bi-encoder, a FAISS index and explanations."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tagindex.version import __version__

if TYPE_CHECKING:
    from tagindex.config import EncoderParams, TagIndexParams, TextParams, VectorIndexParams
    from tagindex.index import TagIndex
    from tagindex.io import (
        DataError,
        load_products,
        load_tags,
        products_from_frame,
        results_to_frame,
        tags_from_frame,
    )
    from tagindex.kinds import KindPolicy
    from tagindex.schema import Product, Tag, TagResult, TagScore

# Public name -> module defining it. Imported on first use (PEP 562), so ``import tagindex.cli`` or
# ``import tagindex.errors`` does not load faiss and pandas through ``tagindex.index``.
_EXPORTS = {
    "DataError": "tagindex.io",
    "EncoderParams": "tagindex.config",
    "KindPolicy": "tagindex.kinds",
    "Product": "tagindex.schema",
    "Tag": "tagindex.schema",
    "TagIndex": "tagindex.index",
    "TagIndexParams": "tagindex.config",
    "TagResult": "tagindex.schema",
    "TagScore": "tagindex.schema",
    "TextParams": "tagindex.config",
    "VectorIndexParams": "tagindex.config",
    "load_products": "tagindex.io",
    "load_tags": "tagindex.io",
    "products_from_frame": "tagindex.io",
    "results_to_frame": "tagindex.io",
    "tags_from_frame": "tagindex.io",
}

__all__ = [
    "__version__",
    "DataError",
    "EncoderParams",
    "KindPolicy",
    "Product",
    "Tag",
    "TagIndex",
    "TagIndexParams",
    "TagResult",
    "TagScore",
    "TextParams",
    "VectorIndexParams",
    "load_products",
    "load_tags",
    "products_from_frame",
    "results_to_frame",
    "tags_from_frame",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tagindex' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
