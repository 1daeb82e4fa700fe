"""Saved directories: versioned switch, recovery at load, cleanup, manifest checksums, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rerank_helpers import HashEncoder

from tagindex import Tag, TagIndex
from tagindex.store import (
    MANIFEST,
    PAUSE_ENV,
    POINTER,
    VERSIONS,
    IndexFormatError,
    atomic_directory,
    manifest_checksum,
    read_manifest,
    resolve,
    versioned_directory,
    write_manifest,
)

KIND = "test-kind"
ROOT = Path(__file__).resolve().parents[2]


def save(target: Path, payload: str) -> None:
    with versioned_directory(target) as tmp:
        (tmp / "data.txt").write_text(payload)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "more.txt").write_text(payload * 2)
        write_manifest(tmp, {"kind": KIND, "format_version": 1})


def payload(target: Path) -> str:
    return (read_manifest(target, KIND).root / "data.txt").read_text()


def live_versions(target: Path) -> list[str]:
    return sorted(p.name for p in (target / VERSIONS).iterdir())


def test_versions_switch_and_only_the_previous_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    for i in range(1, 5):
        save(target, f"v{i}")
        assert payload(target) == f"v{i}"
    assert live_versions(target) == ["000003", "000004"]
    assert json.loads((target / POINTER).read_text())["version"] == "000004"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_failed_save_leaves_the_live_version_and_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    save(target, "old")
    with pytest.raises(RuntimeError, match="boom"), versioned_directory(target) as tmp:
        (tmp / "data.txt").write_text("half")
        raise RuntimeError("boom")
    assert payload(target) == "old"
    assert live_versions(target) == ["000001"]


def test_format_version_and_kind_are_checked_in_one_place(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    save(target, "x")
    with pytest.raises(IndexFormatError, match=r"manifest.json: test-kind format version 1 is not supported"):
        read_manifest(target, KIND, format_version=2)
    with pytest.raises(IndexFormatError, match="manifest is for 'test-kind', expected 'tagindex'"):
        read_manifest(target, "tagindex")
    with pytest.raises(IndexFormatError, match="not found"):
        read_manifest(tmp_path / "nothing", KIND)
    with pytest.raises(IndexFormatError, match=r"not a saved test-kind \(no manifest.json\)"):
        read_manifest(tmp_path, KIND)


def test_plain_layout_still_loads_and_is_migrated_by_the_next_save(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    target.mkdir()
    (target / "data.txt").write_text("legacy")
    manifest = write_manifest(target, {"kind": KIND, "format_version": 1})
    # Indexes saved before manifests carried their own checksum load as they are.
    del manifest["manifest_sha256"]
    (target / MANIFEST).write_text(json.dumps(manifest))
    assert payload(target) == "legacy" and resolve(target) == (target, False)
    save(target, "new")
    assert payload(target) == "new"
    assert sorted(p.name for p in target.iterdir()) == [".lock", POINTER, VERSIONS]


@pytest.mark.parametrize("versioned", [True, False])
def test_every_flipped_manifest_byte_is_refused_naming_the_file(tmp_path: Path, versioned: bool) -> None:
    target = tmp_path / "idx"
    if versioned:
        save(target, "x")
    else:
        with atomic_directory(target) as tmp:
            (tmp / "data.txt").write_text("x")
            write_manifest(tmp, {"kind": KIND, "format_version": 1, "next_id": 394})
    path = read_manifest(target, KIND).root / MANIFEST
    good = path.read_bytes()
    for i in range(len(good)):
        flipped = bytearray(good)
        flipped[i] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(IndexFormatError) as err:
            read_manifest(target, KIND)
        message = str(err.value)
        assert "\n" not in message and (str(path) in message or str(target) in message), message
    path.write_bytes(good)
    assert payload(target) == "x"


def test_manifest_checksum_is_over_canonical_json() -> None:
    m = {"b": 1, "a": [1.5, "é"], "manifest_sha256": "ignored"}
    assert manifest_checksum(m) == manifest_checksum({"a": [1.5, "é"], "b": 1})


def test_missing_or_damaged_pointer_falls_back_to_the_newest_complete_version(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    save(target, "v1")
    save(target, "v2")
    # A half-written version (no manifest) and an abandoned temporary directory are ignored.
    (target / VERSIONS / "000009").mkdir()
    (target / VERSIONS / "000009" / "data.txt").write_text("half")
    (target / VERSIONS / ".tmp-abc").mkdir()
    (target / POINTER).write_text("{not json")
    assert payload(target) == "v2"
    (target / POINTER).unlink()
    assert payload(target) == "v2"
    # A version whose manifest is damaged is not complete either.
    manifest = target / VERSIONS / "000002" / MANIFEST
    text = json.loads(manifest.read_text())
    text["format_version"] = 7
    manifest.write_text(json.dumps(text))
    assert payload(target) == "v1"
    save(target, "v3")  # the next save keeps the live and the previous complete version only
    assert payload(target) == "v3"
    assert live_versions(target) == ["000001", "000010"]
    assert not (target / VERSIONS / ".tmp-abc").exists() and not (target / VERSIONS / "000009").exists()


def test_pointer_must_agree_with_the_manifest_it_names(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    save(target, "v1")
    pointer = json.loads((target / POINTER).read_text())
    pointer["manifest_sha256"] = "0" * 64
    (target / POINTER).write_text(json.dumps(pointer))
    with pytest.raises(IndexFormatError, match="manifest does not match"):
        read_manifest(target, KIND)


def test_plain_replace_cleans_and_repairs_what_killed_saves_left(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "data.txt").write_text("v1")
        write_manifest(tmp, {"kind": KIND})
    # A kill between the two renames of an earlier save: only the parked copy is left.
    parked = tmp_path / ".model.old-x1"
    os.rename(target, parked)
    (tmp_path / ".model.tmp-y2").mkdir()
    assert (read_manifest(target, KIND).root / "data.txt").read_text() == "v1"  # found beside it
    with atomic_directory(target) as tmp:
        (tmp / "data.txt").write_text("v2")
        write_manifest(tmp, {"kind": KIND})
    assert (read_manifest(target, KIND).root / "data.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


_CHILD = """
import sys
from pathlib import Path
from tagindex.store import versioned_directory, write_manifest
with versioned_directory(Path(sys.argv[1])) as tmp:
    (tmp / "data.txt").write_text("new")
    (tmp / "big.bin").write_bytes(b"x" * 200_000)
    write_manifest(tmp, {"kind": "test-kind", "format_version": 1})
"""


def _kill_inside(target: Path, point: str) -> None:
    """Runs a save in a child process, stops it at ``point`` and kills it with SIGKILL there."""
    env = {**os.environ, PAUSE_ENV: point, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(target)], stderr=subprocess.PIPE, env=env, text=True
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline and not line:
        line = proc.stderr.readline()
    assert line.strip() == f"paused at {point}", line
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    ("point", "expected"),
    [("version-written", "old"), ("pointer-written", "old"), ("switched", "new")],
)
def test_kill_9_inside_the_switch_window_leaves_old_or_new(tmp_path: Path, point: str, expected: str) -> None:
    target = tmp_path / "idx"
    save(target, "old")
    _kill_inside(target, point)
    assert payload(target) == expected  # a restart loads a whole index, never nothing
    save(target, "after")  # the lock died with the killed process; its leftovers are cleaned
    assert payload(target) == "after"
    assert len(live_versions(target)) == 2
    assert not list(target.glob(f".{POINTER}.tmp-*"))


def test_kill_9_during_the_first_save_over_a_plain_index(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    target.mkdir()
    (target / "data.txt").write_text("old")
    write_manifest(target, {"kind": KIND, "format_version": 1})
    _kill_inside(target, "pointer-written")
    assert payload(target) == "old"
    _kill_inside(target, "switched")
    assert payload(target) == "new"


# ---- the same guarantees through TagIndex ------------------------------------------------------
TAGS = [Tag("boots", "Hiking boots"), Tag("mugs", "Coffee mugs"), Tag("kettles", "Electric kettles")]

_INDEX_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from rerank_helpers import HashEncoder
from tagindex import Tag, TagIndex
index = TagIndex.load(sys.argv[1], encoder=HashEncoder())
index.add_tags([Tag("wetsuits", "Neoprene wetsuits")])
index.save(sys.argv[1])
"""


@pytest.mark.parametrize(("point", "expected"), [("pointer-written", 3), ("switched", 4)])
def test_kill_9_inside_an_index_save_restarts_whole(tmp_path: Path, point: str, expected: int) -> None:
    target = tmp_path / "idx"
    TagIndex.build(TAGS, encoder=HashEncoder()).save(target)
    env = {**os.environ, PAUSE_ENV: point}
    proc = subprocess.Popen(
        [sys.executable, "-c", _INDEX_CHILD, str(target), str(Path(__file__).parent)],
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    while line and not line.startswith("paused at"):
        line = proc.stderr.readline()
    assert line.strip() == f"paused at {point}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(TagIndex.load(target, encoder=HashEncoder())) == expected


def test_update_never_reuses_a_faiss_id_even_if_next_id_is_low(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    TagIndex.build(TAGS, encoder=HashEncoder()).save(target)
    # A manifest that passes its checksum but carries a stale next_id (as older versions could).
    path = read_manifest(target, "tagindex").root / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["next_id"] = 1
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    path.write_text(json.dumps(manifest))
    (target / POINTER).write_text(json.dumps({"version": path.parent.name}))
    index = TagIndex.load(target, encoder=HashEncoder())
    before = set(index._int_ids.tolist())
    index.add_tags([Tag("wetsuits", "Neoprene wetsuits")])
    assert len(set(index._int_ids.tolist())) == 4 and before < set(index._int_ids.tolist())
    for tag in [*TAGS, Tag("wetsuits", "Neoprene wetsuits")]:
        assert index.similar(tag.name, top_k=1)[0].tag == tag.id


def test_saved_directories_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save(tmp_path / "idx", "x")
    finally:
        os.umask(old)
    live = read_manifest(tmp_path / "idx", KIND).root
    assert live.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "idx" / POINTER).stat().st_mode & 0o777 == 0o644


def test_linked_files_keep_their_recorded_digest(tmp_path: Path) -> None:
    from tagindex.store import link_or_copy_tree

    target = tmp_path / "idx"
    save(target, "v1")
    first = read_manifest(target, KIND)
    with versioned_directory(target) as tmp:
        link_or_copy_tree(first.root / "sub", tmp / "sub")
        (tmp / "data.txt").write_text("v2")
        write_manifest(tmp, {"kind": KIND, "format_version": 1})
    second = read_manifest(target, KIND)  # verifies every digest against the files
    assert second["files"]["sub/more.txt"] == first["files"]["sub/more.txt"]
    assert (second.root / "sub" / "more.txt").stat().st_ino == (first.root / "sub" / "more.txt").stat().st_ino


def test_encoder_directory_survives_the_cleanup_of_the_version_it_was_loaded_from(tmp_path: Path) -> None:
    from tagindex import TagIndexParams

    model = tmp_path / "my-model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 1000)
    params = TagIndexParams()
    params.encoder.model = str(model)
    target = tmp_path / "idx"
    TagIndex.build(TAGS, params, encoder=HashEncoder()).save(target)
    index = TagIndex.load(target, encoder=HashEncoder())
    loaded_from = read_manifest(target, "tagindex").root
    for i in range(3):  # the version loaded from is removed after the second save
        index.add_tags([Tag(f"new{i}", f"New tag {i}")])
        index.save(target)
    assert not loaded_from.exists()
    live = read_manifest(target, "tagindex").root
    assert index.params.encoder.model == str(live / "encoder")
    assert (live / "encoder" / "weights.bin").read_bytes() == b"w" * 1000
    assert len(TagIndex.load(target, encoder=HashEncoder())) == len(TAGS) + 3


def test_an_index_written_before_attribute_labels_encodes_products_as_it_did(tmp_path: Path) -> None:
    from tagindex import Product
    from tagindex.text import product_text

    target = tmp_path / "idx"
    TagIndex.build(TAGS, encoder=HashEncoder()).save(target)
    offer = Product("1", "Youth UFC Hoodie", attributes={"breadcrumb": "UFC > Hoodies"})
    new = TagIndex.load(target, encoder=HashEncoder())
    assert product_text(offer, new.params.text).endswith("category: UFC > Hoodies")
    # The same manifest as an older version wrote it: no attribute_labels among the text params.
    path = read_manifest(target, "tagindex").root / MANIFEST
    manifest = json.loads(path.read_text())
    del manifest["params"]["text"]["attribute_labels"]
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    path.write_text(json.dumps(manifest))
    (target / POINTER).write_text(json.dumps({"version": path.parent.name}))
    old = TagIndex.load(target, encoder=HashEncoder())
    assert old.params.text.attribute_labels == {}
    assert product_text(offer, old.params.text).endswith("breadcrumb: UFC > Hoodies")
    as_before = Product("1", "Youth UFC Hoodie. breadcrumb: UFC > Hoodies")  # the same encoder text
    assert old.tag([offer])[0].tags == new.tag([as_before])[0].tags
