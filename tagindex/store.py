"""Directory persistence helpers: checksums, manifests and atomic replacement of a saved directory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagindex.errors import ArtifactError
from tagindex.umask import apply_umask_tree


class IndexFormatError(ArtifactError):
    """A saved directory is missing, incomplete, corrupted or from an incompatible version."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksums(directory: Path) -> dict[str, str]:
    """sha256 of every file below ``directory`` except the manifest, keyed by relative path."""
    return {
        str(p.relative_to(directory)): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def library_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


@contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary sibling directory that replaces ``target`` only if the block succeeds.

    A failure (or a crash) inside the block leaves any existing ``target`` untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        apply_umask_tree(tmp)  # mkdtemp made it 0700; safetensors writes 0600 files
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            old.rmdir()
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    manifest = {**manifest, "files": checksums(directory)}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(
    directory: str | os.PathLike[str],
    kind: str,
    verify: bool = True,
    on_file: Callable[[str], None] | None = None,
    format_version: int | None = None,
) -> dict[str, Any]:
    """Reads and checks a manifest: right kind, every listed file present with its checksum, and
    (when ``format_version`` is given) the format version this code reads."""
    directory = Path(directory)
    path = directory / "manifest.json"
    if not path.exists():
        raise IndexFormatError(f"{directory}: not a saved {kind} (no manifest.json)")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{path}: unreadable manifest: {exc}") from None
    if manifest.get("kind") != kind:
        raise IndexFormatError(f"{directory}: manifest is for '{manifest.get('kind')}', expected '{kind}'")
    if format_version is not None and manifest.get("format_version") != format_version:
        raise IndexFormatError(
            f"{directory}: {kind} format version {manifest.get('format_version')} "
            f"is not supported (expected {format_version})"
        )
    if verify:
        for rel, digest in manifest.get("files", {}).items():
            file = directory / rel
            if not file.exists():
                raise IndexFormatError(f"{directory}: missing file {rel}")
            if sha256_file(file) != digest:
                raise IndexFormatError(
                    f"{directory}: checksum mismatch for {rel} (file changed or corrupted)"
                )
            if on_file:
                on_file(rel)
    return manifest
