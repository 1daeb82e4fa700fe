"""Shared helpers for encoder backends: the cache of derived models and source fingerprints."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import lru_cache
from pathlib import Path

from tagindex.encoders import EncoderError

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    """Where exported and distilled models are cached (``$TAGINDEX_CACHE_DIR``, else ~/.cache/tagindex)."""
    env = os.environ.get("TAGINDEX_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "tagindex"


def source_digest(model_dir: str | Path) -> str:
    """Content hash of a sentence-transformers directory's weights and configs (names the cache entry)."""
    model_dir = Path(model_dir)
    files = sorted(
        p
        for p in model_dir.iterdir()
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".txt"} and p.name != "README.md"
    )
    if not files:
        raise EncoderError(f"{model_dir}: no model files found")
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _digest(key)


@lru_cache(maxsize=16)
def _digest(key: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for path, _, _ in key:
        h.update(Path(path).name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def read_derived_manifest(directory: str | Path, kind: str, format_version: int | None = None) -> dict | None:
    """The manifest of a derived model directory of ``kind`` (and ``format_version`` when given), or
    None when ``directory`` is not an intact one (then it is exported again)."""
    from tagindex.store import IndexFormatError, read_manifest

    try:
        manifest = read_manifest(directory, kind, verify=False, format_version=format_version)
    except IndexFormatError:
        return None
    # Files are read from ``directory`` itself, so a copy found elsewhere (left beside it by an
    # interrupted replace) does not count.
    return manifest if manifest.root == Path(directory) else None


def check_mean_pooling(model_dir: str | Path) -> None:
    """Refuses models whose sentence-transformers pooling is not plain mean pooling (all we export)."""
    pooling = Path(model_dir) / "1_Pooling" / "config.json"
    if pooling.is_file():
        config = json.loads(pooling.read_text())
        # sentence-transformers >= 6 writes one ``pooling_mode`` string; older versions a flag per mode.
        mean = config.get("pooling_mode") == "mean" or bool(config.get("pooling_mode_mean_tokens"))
        if not mean or any(
            config.get(k)
            for k in (
                "pooling_mode_cls_token",
                "pooling_mode_max_tokens",
                "pooling_mode_mean_sqrt_len_tokens",
            )
        ):
            raise EncoderError(f"{model_dir}: only mean-pooling models can be exported (pooling {config})")
    if not (Path(model_dir) / "tokenizer.json").is_file():
        raise EncoderError(f"{model_dir}: no tokenizer.json (a fast tokenizer file is needed)")
