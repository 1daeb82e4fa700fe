"""Directory persistence helpers: checksums, manifests and atomic replacement of a saved directory."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagindex.errors import ArtifactError


class IndexFormatError(ArtifactError):
    """A saved directory is missing, incomplete, corrupted or from an incompatible version."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksums(directory: Path, known: dict[str, str] | None = None) -> dict[str, str]:
    """sha256 of every file below ``directory`` except the manifest, keyed by relative path.

    ``known`` gives digests already computed for files carried over unchanged (hard links of a
    verified directory), so re-saving a small part of a large directory does not re-hash the rest.
    """
    known = known or {}
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            rel = str(p.relative_to(directory))
            out[rel] = known[rel] if rel in known else sha256_file(p)
    return out


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
        _fsync_tree(tmp)
        if target.exists():
            if _exchange(tmp, target):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
            else:
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                old.rmdir()
                # A crash between these two renames leaves no ``target``: recover_directory() puts the
                # old directory back.
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flushes every file and folder below ``root`` so a power loss cannot expose an empty file."""
    for p in sorted(root.rglob("*"), reverse=True):
        if p.is_file() and not p.is_symlink():
            with p.open("rb") as f:
                os.fsync(f.fileno())
        elif p.is_dir():
            _fsync_dir(p)
    _fsync_dir(root)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(rc == 0)


def recover_directory(target: str | os.PathLike[str]) -> bool:
    """Restores ``target`` after a crash between the two renames of :func:`atomic_directory`.

    Only needed where the atomic exchange is unsupported: if ``target`` is missing and an old copy
    (``.NAME.old-*``) is left beside it, that copy is renamed back. Returns True when it restored one.
    """
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return False
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return False
    os.replace(olds[-1], target)
    return True


def write_manifest(directory: Path, manifest: dict[str, Any], known: dict[str, str] | None = None) -> None:
    """Writes ``manifest.json`` with the checksum of every file (``known``: see :func:`checksums`)."""
    manifest = {**manifest, "files": checksums(directory, known)}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(
    directory: str | os.PathLike[str],
    kind: str,
    verify: bool = True,
    on_file: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Reads and checks a manifest: right kind, every listed file present with its checksum."""
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
