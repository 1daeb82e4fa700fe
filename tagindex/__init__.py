"""tagindex: assign product tags with a bi-encoder, a FAISS index and explanations."""

from __future__ import annotations

from tagindex.config import EncoderParams, TagIndexParams, TextParams, VectorIndexParams
from tagindex.index import TagIndex
from tagindex.io import DataError, load_products, load_tags
from tagindex.schema import Product, Tag, TagResult, TagScore
from tagindex.version import __version__

__all__ = [
    "__version__",
    "DataError",
    "EncoderParams",
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
]
