"""One exception hierarchy for the whole package.

Every error a user can cause (bad input, a damaged index, a model that will not load, artifacts that
do not belong together) is a :class:`TagindexError`. The CLI turns one into exit status 2 and a single
line; the service into a 4xx answer carrying the same message. Anything else is a bug.
"""

from __future__ import annotations


class TagindexError(Exception):
    """Base class of every error tagindex raises on purpose; ``str(err)`` is one readable line."""


class InputError(TagindexError, ValueError):
    """A user-supplied file, row, option or request is malformed (names the file and line if any)."""


class IndexError_(TagindexError, ValueError):
    """A saved artifact directory is missing, incomplete, damaged or of an unsupported format."""


class ModelError(TagindexError, RuntimeError):
    """A model (encoder, reranker) cannot be loaded or run."""


class CompatibilityError(TagindexError, ValueError):
    """Artifacts that must belong together do not (index, reranker, calibration, vocabulary)."""


# ``IndexError`` is a builtin; the public name of the index error is ``ArtifactError``.
ArtifactError = IndexError_
del IndexError_

__all__ = ["ArtifactError", "CompatibilityError", "InputError", "ModelError", "TagindexError"]
