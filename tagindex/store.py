"""Directory persistence: checksummed manifests and saved directories that are never missing.

Two layouts are written:

- **Versioned** (:func:`versioned_directory`, used for indexes, which are rewritten in place by
  ``update`` and the service)::

      INDEX/
        CURRENT            pointer: {"version": "000007", "manifest_sha256": ...}
        versions/000006/   the previous version, kept for rollback
        versions/000007/   manifest.json + the files it lists
        .lock              held (flock) by the process that is saving

  A save writes a whole new version beside the live one, renames it into place under a fresh name,
  then switches ``CURRENT`` with one ``rename(2)`` of a fsynced pointer file. At every instant the
  pointer names a complete version, so a kill at any point leaves the old or the new index, never
  none. :func:`resolve` recovers at load: a half-written version (a ``.tmp-*`` directory, or a version
  without a valid manifest) is ignored, and a missing or damaged pointer falls back to the newest
  complete version.

- **Plain** (:func:`atomic_directory`, for directories that other libraries read directly: trained
  models, ONNX and static encoder exports): files at the top level, replaced by two renames. The
  short window between them is repaired by :func:`repair_plain_directory`.

Older indexes (a plain directory with ``manifest.json``) keep loading; the first save over one
turns it into the versioned layout at the same path.

Every manifest written here carries ``manifest_sha256``, a checksum over its own canonical JSON, so
a flipped byte in the manifest is refused like a flipped byte in any file it lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagindex.errors import ArtifactError
from tagindex.umask import apply_umask, apply_umask_tree

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; saves there are not serialised
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
POINTER = "CURRENT"
VERSIONS = "versions"
LOCK = ".lock"
CHECKSUM_FIELD = "manifest_sha256"
KEEP_VERSIONS = 2  # the live version and the one before it (rollback)
_VERSION_NAME = re.compile(r"^\d{6,}$")
# Test hook: the name of a point inside a save at which to stop (see :func:`_fault_point`).
PAUSE_ENV = "TAGINDEX_STORE_PAUSE_AT"


class IndexFormatError(ArtifactError):
    """A saved directory is missing, incomplete, corrupted or from an incompatible version."""


class Manifest(dict[str, Any]):
    """A checked manifest; ``root`` is the directory holding the files it lists.

    For a versioned directory ``root`` is the live version (``INDEX/versions/NNNNNN``), for a plain
    one the directory itself. Read every file through ``root``.
    """

    root: Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksums(directory: Path, known: tuple[Path, dict[str, str]] | None = None) -> dict[str, str]:
    """sha256 of every file below ``directory`` except its own manifest, keyed by relative path.

    Manifests of nested directories (an encoder export, a graph) are listed like any other file.

    Args:
        directory: The directory to list.
        known: ``(root, files)`` of a saved version: a file that is a hard link of the same path
            there takes its recorded digest instead of being read again.
    """
    out: dict[str, str] = {}
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory).as_posix()
        if not p.is_file() or rel == MANIFEST:
            continue
        if known is not None and rel in known[1] and _same_file(p, known[0] / rel):
            out[rel] = known[1][rel]
        else:
            out[rel] = sha256_file(p)
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _live_files(directory: Path) -> tuple[Path, dict[str, str]] | None:
    """For a version being written (``INDEX/versions/.tmp-*``): the live version and its listed files."""
    if directory.parent.name != VERSIONS:
        return None
    pointed = _read_pointer(directory.parent.parent)
    if pointed is None:
        return None
    try:
        files = _load_manifest_file(pointed[0] / MANIFEST, required_checksum=True).get("files")
    except IndexFormatError:
        return None
    return (pointed[0], files) if isinstance(files, dict) else None


def library_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of a manifest, its own checksum field left out."""
    return hashlib.sha256(_canonical(manifest)).hexdigest()


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """Flushes every file and directory below ``directory`` (and itself) to stable storage."""
    for p in sorted(directory.rglob("*"), reverse=True):
        if not p.is_symlink():
            _fsync_path(p)
    _fsync_path(directory)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Writes ``manifest.json`` listing the checksum of every file in ``directory`` and its own.

    Returns:
        The manifest as written (with ``files`` and ``manifest_sha256``).
    """
    full = {k: v for k, v in manifest.items() if k != CHECKSUM_FIELD}
    # Files hard-linked from the live version keep its digests (saved files are never modified).
    full["files"] = checksums(directory, _live_files(directory))
    full[CHECKSUM_FIELD] = manifest_checksum(full)
    (directory / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return full


def _fault_point(name: str) -> None:
    """Stops the process at ``name`` when the test hook asks for it (kill -9 durability tests).

    With ``TAGINDEX_STORE_PAUSE_AT=name`` the process prints ``paused at name`` on stderr and sleeps,
    so a test can kill it exactly there. Unset (always, outside tests) this costs one lookup.
    """
    if os.environ.get(PAUSE_ENV) == name:
        os.write(2, f"paused at {name}\n".encode())
        time.sleep(3600)


# ---- reading ------------------------------------------------------------------------------------
def _load_manifest_file(path: Path, required_checksum: bool) -> dict[str, Any]:
    """Parses ``path`` and checks its own checksum; every problem names the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IndexFormatError(f"{path}: cannot read manifest ({exc.strerror})") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise IndexFormatError(f"{path}: unreadable manifest ({reason}); the file is damaged") from None
    if not isinstance(manifest, dict):
        raise IndexFormatError(f"{path}: unreadable manifest (not a JSON object); the file is damaged")
    stored = manifest.get(CHECKSUM_FIELD)
    if stored is None:
        # Manifests written before the checksum existed load as they are, but a one-byte flip inside
        # the field's name must not pass for one: it leaves the prefix or the suffix intact.
        if required_checksum or any(
            isinstance(k, str) and (k.startswith("manifest_") or k.endswith("sha256")) for k in manifest
        ):
            raise IndexFormatError(f"{path}: manifest has no {CHECKSUM_FIELD}; the file is damaged")
    elif stored != manifest_checksum(manifest):
        raise IndexFormatError(f"{path}: manifest checksum mismatch (file changed or corrupted)")
    return manifest


def _version_dirs(directory: Path) -> list[Path]:
    versions = directory / VERSIONS
    if not versions.is_dir():
        return []
    return sorted((p for p in versions.iterdir() if _VERSION_NAME.match(p.name) and p.is_dir()), key=_number)


def _number(path: Path) -> int:
    return int(path.name)


def _read_pointer(directory: Path) -> tuple[Path, str | None] | None:
    """The version the pointer names (and the manifest checksum it recorded), or None if unusable."""
    path = directory / POINTER
    try:
        pointer = json.loads(path.read_text(encoding="utf-8"))
        name = pointer["version"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: damaged pointer (%s); using the newest complete version", path, exc)
        return None
    if not isinstance(name, str) or not _VERSION_NAME.match(name):
        logger.warning("%s: damaged pointer; using the newest complete version", path)
        return None
    version = directory / VERSIONS / name
    if not (version / MANIFEST).is_file():
        logger.warning("%s names %s, which is missing; using the newest complete version", path, version)
        return None
    digest = pointer.get("manifest_sha256")
    return version, digest if isinstance(digest, str) else None


def _complete(version: Path) -> bool:
    try:
        _load_manifest_file(version / MANIFEST, required_checksum=True)
    except IndexFormatError:
        return False
    return True


def _legacy_siblings(directory: Path) -> list[Path]:
    # The former two-rename replace parked the old directory here; a kill between the renames left
    # only this copy.
    parent = directory.parent
    if not parent.is_dir():
        return []
    return sorted(
        (p for p in parent.glob(f".{directory.name}.old-*") if (p / MANIFEST).is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )


def resolve(directory: str | os.PathLike[str], kind: str = "saved directory") -> tuple[Path, bool]:
    """The directory holding the live files of a saved directory, and whether it is versioned.

    Order: the version the pointer names; a plain (older) layout's own manifest; the newest complete
    version (pointer missing or damaged); a copy an interrupted older save left beside it.

    Raises:
        IndexFormatError: Nothing loadable is there.
    """
    directory = Path(directory)
    pointed = _read_pointer(directory) if directory.is_dir() else None
    if pointed is not None:
        return pointed[0], True
    if (directory / MANIFEST).is_file():
        return directory, False
    for version in reversed(_version_dirs(directory)):
        if _complete(version):
            logger.warning("%s: no usable %s; recovered version %s", directory, POINTER, version.name)
            return version, True
    for old in _legacy_siblings(directory):
        logger.warning("%s: missing; using %s left by an interrupted save", directory, old)
        return old, False
    if not directory.exists():
        raise IndexFormatError(f"{directory}: not found (expected a saved {kind})")
    raise IndexFormatError(f"{directory}: not a saved {kind} (no {MANIFEST})")


def read_manifest(
    directory: str | os.PathLike[str],
    kind: str,
    verify: bool = True,
    on_file: Callable[[str], None] | None = None,
    format_version: int | None = None,
) -> Manifest:
    """Finds the live version of a saved directory and checks its manifest.

    The one place every saved artifact is checked: the manifest's own checksum, its kind, its format
    version and (with ``verify``) every listed file's presence and checksum.

    Args:
        directory: A saved directory (versioned or plain).
        kind: The ``kind`` the manifest must declare (``tagindex``, ``tagindex-reranker``...).
        verify: Also checksum every listed file (slow for big directories).
        on_file: Called with each verified file's relative path (progress).
        format_version: When given, the manifest's ``format_version`` must equal it.

    Returns:
        The manifest; its ``root`` is the directory to read the listed files from.

    Raises:
        IndexFormatError: Missing, damaged, of another kind or an unsupported format; the message
            names the file.
    """
    root, versioned = resolve(directory, kind)
    path = root / MANIFEST
    data = _load_manifest_file(path, required_checksum=versioned)
    if versioned:
        pointed = _read_pointer(Path(directory))
        if pointed is not None and pointed[0] == root and pointed[1] not in (None, data[CHECKSUM_FIELD]):
            raise IndexFormatError(f"{path}: manifest does not match {Path(directory) / POINTER}")
    if data.get("kind") != kind:
        raise IndexFormatError(f"{path}: manifest is for '{data.get('kind')}', expected '{kind}'")
    if format_version is not None and data.get("format_version") != format_version:
        raise IndexFormatError(
            f"{path}: {kind} format version {data.get('format_version')} is not supported "
            f"(expected {format_version})"
        )
    files = data.get("files", {})
    if not isinstance(files, dict):
        raise IndexFormatError(f"{path}: manifest 'files' is not an object; the file is damaged")
    if verify:
        for rel, digest in files.items():
            file = root / rel
            if not file.is_file():
                raise IndexFormatError(f"{file}: missing (listed in {path})")
            if sha256_file(file) != digest:
                raise IndexFormatError(f"{file}: checksum mismatch (file changed or corrupted)")
            if on_file:
                on_file(rel)
    manifest = Manifest(data)
    manifest.root = root
    return manifest


# ---- writing: versioned -------------------------------------------------------------------------
@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock; a killed process releases it too


def _write_pointer(directory: Path, version: Path, digest: str) -> None:
    body = json.dumps({"version": version.name, "manifest_sha256": digest}) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{POINTER}.tmp-", dir=directory)
    try:
        apply_umask(tmp)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        _fault_point("pointer-written")
        os.replace(tmp, directory / POINTER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_path(directory)


def _claim_version(versions: Path, tmp: Path) -> Path:
    existing = _version_dirs(versions.parent)
    number = _number(existing[-1]) + 1 if existing else 1
    while True:
        target = versions / f"{number:06d}"
        try:
            os.rename(tmp, target)  # fails if the name exists (a version always holds a manifest)
        except OSError:
            if not target.exists():
                raise
            number += 1
            continue
        _fsync_path(versions)
        return target


@contextmanager
def versioned_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields an empty directory that becomes the live version of ``target`` if the block succeeds.

    The block must write every file and finally :func:`write_manifest`. Saves to one target are
    serialised by a lock; a failure or a kill anywhere leaves the previous version live. Afterwards
    versions older than the previous one, leftover temporary directories and the files of an older
    plain layout are removed.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    versions = target / VERSIONS
    versions.mkdir(exist_ok=True)
    with _locked(target):
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=versions))
        apply_umask(tmp, directory=True)
        try:
            yield tmp
            apply_umask_tree(tmp)  # mkdtemp made it 0700; safetensors writes 0600 files
            manifest = _load_manifest_file(tmp / MANIFEST, required_checksum=True)
            apply_umask_tree(tmp)  # safetensors writes 0600 files
            fsync_tree(tmp)
            version = _claim_version(versions, tmp)
            _fault_point("version-written")
            _write_pointer(target, version, manifest[CHECKSUM_FIELD])
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fault_point("switched")
        cleanup(target)


def cleanup(target: str | os.PathLike[str], keep: int = KEEP_VERSIONS) -> list[Path]:
    """Removes what no reader needs: versions before the last ``keep``, abandoned temporary
    directories, and the files of an older plain layout once a versioned one is live.

    Call with the save lock held (as :func:`versioned_directory` does): any temporary directory or
    unswitched version found then belongs to a save that died.

    Returns:
        The paths removed.
    """
    target = Path(target)
    pointed = _read_pointer(target)
    if pointed is None:
        return []  # nothing is known to be live; removing anything could remove the only copy
    live = pointed[0]
    removed: list[Path] = []
    versions = _version_dirs(target)
    older = [v for v in versions if _number(v) < _number(live)]
    kept = [v for v in older if _complete(v)][-(keep - 1) :] if keep > 1 else []
    # Versions above the live one come from saves killed before their switch.
    stale = [v for v in versions if v != live and v not in kept]
    stale += [p for p in (target / VERSIONS).glob(".tmp-*")]
    stale += [p for p in target.glob(f".{POINTER}.tmp-*")]
    stale += _plain_siblings(target)
    if (target / MANIFEST).is_file():
        stale += _plain_layout_entries(target)
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        logger.info("%s: removed %d stale entr%s", target, len(removed), "y" if len(removed) == 1 else "ies")
    return removed


def _plain_layout_entries(target: Path) -> list[Path]:
    """The top-level entries an older plain save wrote, its manifest last (so a kill mid-way leaves
    a layout that still resolves to the live version)."""
    try:
        files = json.loads((target / MANIFEST).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        files = {}
    tops = {Path(rel).parts[0] for rel in files if isinstance(rel, str) and Path(rel).parts}
    tops -= {VERSIONS, POINTER, LOCK, MANIFEST}
    return [target / t for t in sorted(tops) if (target / t).exists()] + [target / MANIFEST]


def link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Hard-links a file, or copies it where the filesystem refuses the link.

    Only for sources that are never modified in place (files of a saved version): a link then
    costs nothing and is as durable as the original.
    """
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_or_copy_tree(src: Path, dst: Path) -> None:
    """Copies a directory with :func:`link_or_copy` for each file."""
    shutil.copytree(src, dst, copy_function=link_or_copy)


# ---- writing: plain -----------------------------------------------------------------------------
def repair_plain_directory(target: str | os.PathLike[str]) -> None:
    """Puts back a plain directory that an interrupted :func:`atomic_directory` left parked aside,
    and removes abandoned temporary siblings."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    if not target.exists():
        for old in _legacy_siblings(target):
            try:
                os.rename(old, target)
                logger.warning("%s: restored from %s (an earlier save was interrupted)", target, old)
                break
            except OSError:
                continue
    if target.exists():
        for stale in _plain_siblings(target):
            shutil.rmtree(stale, ignore_errors=True)


def _plain_siblings(target: Path) -> list[Path]:
    """Temporary and parked directories the plain replace leaves beside ``target`` when killed."""
    if not target.parent.is_dir():
        return []
    return [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.old-*")]


@contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary sibling directory that replaces ``target`` (plain layout) only on success.

    For directories other libraries read as they are (model exports). A failure inside the block
    leaves ``target`` untouched; a kill between the two renames is undone by
    :func:`repair_plain_directory`, which runs on the next save. Indexes use
    :func:`versioned_directory`, which has no such window.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    repair_plain_directory(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    apply_umask(tmp, directory=True)
    try:
        yield tmp
        apply_umask_tree(tmp)  # mkdtemp made it 0700; safetensors writes 0600 files
        fsync_tree(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            old.rmdir()
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
