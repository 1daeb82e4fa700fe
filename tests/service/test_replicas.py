"""ReplicaEngine: two engines in one process over one index directory, as two replicas would be."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from tagindex.service.replicas import ReplicaEngine, manifest_digest

from tagindex.index import TagIndex
from tagindex.schema import Tag


def _engine(index_dir: Path, encoder: Any, poll: float = 0.0) -> ReplicaEngine:
    return ReplicaEngine(index_dir, TagIndex.load(index_dir, encoder=encoder), poll_seconds=poll)


def test_a_change_saved_by_one_replica_is_loaded_by_the_other(index_dir: Path, svc_encoder: Any) -> None:
    a, b = _engine(index_dir, svc_encoder), _engine(index_dir, svc_encoder)
    try:
        assert not b.sync()  # nothing new on disk
        a.add_tags([Tag("custom_Lockets", "Lockets", parent="64010100_Jewellery")])
        assert not a.sync()  # its own save is not reloaded
        assert "custom_Lockets" not in b.index
        assert b.sync() and "custom_Lockets" in b.index and b.reloads == 1
        assert b.similar_to_text("lockets", 1)[0].tag == "custom_Lockets"
        b.remove_tags(["custom_Lockets"])
        assert a.sync() and "custom_Lockets" not in a.index
    finally:
        a.close()
        b.close()


def test_simultaneous_changes_on_two_replicas_are_both_kept(index_dir: Path, svc_encoder: Any) -> None:
    a, b = _engine(index_dir, svc_encoder), _engine(index_dir, svc_encoder)
    n = len(a)
    try:
        start = threading.Barrier(2)

        def add(engine: ReplicaEngine, tag: Tag) -> None:
            start.wait()
            engine.add_tags([tag])

        threads = [
            threading.Thread(target=add, args=(a, Tag("custom_A", "Anklets", parent="64010100_Jewellery"))),
            threading.Thread(target=add, args=(b, Tag("custom_B", "Brooches", parent="64010100_Jewellery"))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        a.sync()
        b.sync()
        assert len(a) == len(b) == n + 2
        assert {"custom_A", "custom_B"} <= {t.id for t in TagIndex.load(index_dir, encoder=svc_encoder).tags}
    finally:
        a.close()
        b.close()


def test_the_watcher_reloads_without_being_asked(index_dir: Path, svc_encoder: Any) -> None:
    a, b = _engine(index_dir, svc_encoder), _engine(index_dir, svc_encoder, poll=0.1)
    try:
        a.add_tags([Tag("custom_Lockets", "Lockets", parent="64010100_Jewellery")])
        done = threading.Event()
        for _ in range(200):
            if "custom_Lockets" in b.index:
                done.set()
                break
            done.wait(0.05)
        assert done.is_set()
    finally:
        a.close()
        b.close()
    assert manifest_digest(index_dir / "missing") is None


def test_a_replica_refuses_an_index_saved_with_another_encoder(index_dir: Path, svc_encoder: Any) -> None:
    import shutil

    from tagindex.store import MANIFEST, IndexFormatError, read_manifest, versioned_directory, write_manifest

    b = _engine(index_dir, svc_encoder)
    try:
        # Another process saves a new version (same files) whose manifest names another encoder.
        live = read_manifest(index_dir, "tagindex")
        with versioned_directory(index_dir) as new:
            shutil.copytree(live.root, new, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST))
            write_manifest(new, {**live, "encoder": {**live["encoder"], "fingerprint": "another-model"}})
        with pytest.raises(IndexFormatError, match="changed encoder"):
            b.sync()
        assert len(b) > 0  # still serving what it had
    finally:
        b.close()
