"""Online learning: judgements change the answers at once, undo restores them exactly, saves are atomic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tagindex.config import TagIndexParams
from tagindex.errors import InputError
from tagindex.index import TagIndex
from tagindex.learn import LEARNED_FILES, learn, save_learned, undo
from tagindex.schema import Product, Tag
from tagindex.store import read_manifest

TAGS = [
    Tag("jewellery", "Jewellery"),
    Tag("necklace", "Necklaces", parent="jewellery"),
    Tag("charm", "Charms and pendants", parent="jewellery"),
    Tag("ring", "Rings", parent="jewellery"),
    Tag("tools", "Tools"),
    Tag("drill", "Power drills", parent="tools"),
    Tag("saw", "Hand saws", parent="tools"),
    Tag("garden", "Garden"),
    Tag("hose", "Garden hoses", parent="garden"),
    Tag("seeds", "Seeds and bulbs", parent="garden"),
]

LABELLED = [
    Product("l1", "Sterling silver chain necklace", tags=["jewellery", "necklace"]),
    Product("l2", "Gold pendant necklace with locket", tags=["jewellery", "necklace"]),
    Product("l3", "18V cordless drill driver", tags=["tools", "drill"]),
    Product("l4", "Crosscut hand saw 22 inch", tags=["tools", "saw"]),
    Product("l5", "Expandable garden hose 50ft", tags=["garden", "hose"]),
]

QUERIES = [
    Product("q1", "Silver angel wing charm"),
    Product("q2", "Tomato seeds heirloom variety pack"),
    Product("q3", "Diamond engagement ring"),
    Product("q4", "Impact driver with two batteries"),
    Product("q5", "Silver angel wing charm bracelet bead"),
]


def run_json(index: TagIndex, products: list[Product] = QUERIES) -> str:
    results = index.tag(products, top_k=4, include_ancestors=True)
    return "\n".join(json.dumps(r.to_dict(), sort_keys=True) for r in results)


@pytest.fixture(scope="module")
def base_index(encoder) -> TagIndex:
    index = TagIndex.build(TAGS, TagIndexParams(), encoder=encoder)
    index.add_exemplars(LABELLED)
    return index


@pytest.fixture()
def index(base_index: TagIndex, tmp_path: Path, encoder) -> TagIndex:
    base_index.save(tmp_path / "idx")
    return TagIndex.load(tmp_path / "idx", encoder=encoder)


def test_accept_makes_the_product_an_exemplar_at_once(index: TagIndex) -> None:
    seeds = Product("s1", "Sunflower seeds giant variety, 100 pack", tags=["garden", "seeds"])
    before = index.tag([QUERIES[1]], top_k=1)[0].tags[0].tag
    learn(index, [seeds])
    after = index.tag([QUERIES[1]], top_k=1)[0].tags[0].tag
    assert after == "seeds"
    assert index.learned is not None and index.learned.version == 1
    # The judged product itself now ranks its accepted tag first, and the log says why.
    assert index.tag([seeds], top_k=1)[0].tags[0].tag == "seeds"
    assert before != "seeds" or index.scorer() is not None


def test_reject_suppresses_the_tag_for_the_product_and_near_duplicates_only(index: TagIndex) -> None:
    charm = Product("c1", "Silver angel wing charm")
    near = Product("c2", "Silver angel wing charm.")
    far = Product("c3", "Silver wedding ring band")
    top = index.tag([charm], top_k=1)[0].tags[0].tag
    far_before = run_json(index, [far])
    learn(index, [charm], judgements=[("c1", top, "reject")])
    v = index.encode_products([charm, near, far])
    assert index.learned is not None
    assert float(v[0] @ v[1]) >= index.learned.radius > float(v[0] @ v[2])
    results = index.tag([charm, near], top_k=4, include_ancestors=True)
    for r in results:
        assert top not in [t.tag for t in r.tags]
    assert len(index.tag([charm], top_k=4)[0].tags) == 4  # still top_k answers
    assert run_json(index, [far]) == far_before  # the unrelated product is untouched


def test_learn_then_undo_is_byte_identical(index: TagIndex) -> None:
    before = run_json(index)
    made = learn(
        index,
        [
            Product("j1", "Silver angel wing charm", tags=["jewellery", "charm"]),
            Product("l3", "18V cordless drill driver", tags=["tools", "saw"]),  # edits a base exemplar
            Product("j2", "Tomato seeds heirloom variety pack", tags=["garden"]),
        ],
        rejected={"j1": ["necklace"], "l3": ["drill"], "j2": ["hose"]},
    )
    during = run_json(index)
    assert during != before
    assert undo(index, [j.id for j in made]) == made
    assert run_json(index) == before
    assert index.learned is not None and index.learned.version == 2 and not index.learned.products


def test_undo_of_one_judgement_equals_never_making_it(
    index: TagIndex, base_index: TagIndex, encoder, tmp_path
) -> None:
    a = Product("j1", "Silver angel wing charm", tags=["jewellery", "charm"])
    b = Product("j2", "Tomato seeds heirloom variety pack", tags=["garden", "seeds"])
    learn(index, [a])
    made_b = learn(index, [b])
    undo(index, [j.id for j in made_b])
    base_index.save(tmp_path / "other")
    only_a = TagIndex.load(tmp_path / "other", encoder=encoder)
    learn(only_a, [a])
    assert run_json(index) == run_json(only_a)


def test_saved_learning_survives_reload_and_bumps_the_version(
    index: TagIndex, tmp_path: Path, encoder
) -> None:
    path = tmp_path / "idx"
    assert read_manifest(path, "tagindex")["index_version"] == 0
    learn(
        index,
        [Product("j1", "Silver angel wing charm", tags=["jewellery", "charm"])],
        rejected={"j1": ["ring"]},
    )
    save_learned(index, path)
    manifest = read_manifest(path, "tagindex")  # verifies every checksum
    assert manifest["index_version"] == 1 and manifest["learned"]["judgements"] == 3
    assert all(f in manifest["files"] for f in LEARNED_FILES)
    reloaded = TagIndex.load(path, encoder=encoder)
    assert run_json(reloaded) == run_json(index)
    # A judgement id is never reused, even after its judgement is deleted.
    undo(reloaded, [1, 2, 3])
    save_learned(reloaded, path)
    again = TagIndex.load(path, encoder=encoder)
    assert again.learned is not None and again.learned.next_id() == 4 and again.learned.version == 2
    # A full save keeps the learned state too.
    again.save(tmp_path / "full")
    assert TagIndex.load(tmp_path / "full", encoder=encoder).learned.version == 2  # type: ignore[union-attr]


def test_bad_judgements_are_refused_with_the_reason(index: TagIndex) -> None:
    with pytest.raises(InputError, match="not in the index"):
        learn(index, [Product("x", "thing", tags=["no-such-tag"])])
    with pytest.raises(InputError, match="without text"):
        learn(index, [], judgements=[("ghost", "ring", "accept")])
    with pytest.raises(InputError, match="action"):
        learn(index, [Product("x", "thing")], judgements=[("x", "ring", "maybe")])
    with pytest.raises(InputError, match="positive, unique"):
        learn(index, [Product("x", "thing", tags=["ring"])], ids=[0])
    learn(index, [Product("x", "thing", tags=["ring"])], ids=[7])
    with pytest.raises(InputError, match="already in the log"):
        learn(index, [Product("x", "thing", tags=["ring"])], ids=[7])
    undo(index, [7])
    assert index.learned is None or not index.learned.judgements


def test_cold_index_learns_without_base_exemplars(encoder) -> None:
    index = TagIndex.build(TAGS, TagIndexParams(), encoder=encoder)
    before = run_json(index)
    made = learn(index, [Product("j", "Tomato seeds heirloom variety pack", tags=["garden", "seeds"])])
    assert index.tag([QUERIES[1]], top_k=1)[0].tags[0].tag == "seeds"
    undo(index, [j.id for j in made])
    assert run_json(index) == before


_WRITER = """
import sys
from tagindex.index import TagIndex
from tagindex.learn import learn, save_learned
from tagindex.schema import Product
path = sys.argv[1]
index = TagIndex.load(path)
tags = [t.id for t in index.tags if t.parent is not None]
for i in range(10_000):
    learn(index, [Product(f"k{i}", f"product number {i}", tags=[tags[i % len(tags)]])])
    save_learned(index, path)
    print(f"ack {i}", flush=True)
"""


@pytest.mark.slow
def test_kill_9_during_learn_leaves_a_consistent_index_with_every_acknowledged_judgement(
    base_index: TagIndex, tmp_path: Path, encoder
) -> None:
    path = tmp_path / "idx"
    base_index.save(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    acked = -1
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        acked = int(line.split()[1])
        # Kill at a varying moment once several saves have been acknowledged (mid-save with high odds:
        # the loop does little besides saving).
        if acked >= 8:
            time.sleep(0.013 * (acked % 7))
            os.kill(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    index = TagIndex.load(path, encoder=encoder)  # verifies checksums of the live version
    assert index.learned is not None
    learned = {p for p in index.learned.products}
    assert {f"k{i}" for i in range(acked + 1)} <= learned
    # Nothing half-applied: the log and the saved version agree with the manifest.
    manifest = read_manifest(path, "tagindex")
    assert manifest["learned"]["judgements"] == len(index.learned.judgements) == index.learned.version
    # The live version is a complete one; a save cut short left at most a temporary directory,
    # which the next save removes.
    assert manifest.root.parent.name == "versions" and (manifest.root / "learned.json").is_file()
    learn(index, [Product("after", "after the crash", tags=[index.tags[-1].id])])
    save_learned(index, path)
    assert not list((path / "versions").glob(".tmp-*"))


def test_negative_radius_is_cosine_on_the_stored_vector(index: TagIndex) -> None:
    learn(index, [Product("z", "Garden hose reel")], judgements=[("z", "hose", "reject")])
    v = index.learned.vectors["z"]  # type: ignore[union-attr]
    assert np.isclose(float(np.linalg.norm(v)), 1.0, atol=1e-4)
    assert index.learned.suppressed(v[None, :]) == [{"hose"}]  # type: ignore[union-attr]


def test_sources_number_their_judgements_independently(index: TagIndex) -> None:
    before = run_json(index)
    a = learn(index, [Product("s1", "Silver angel wing charm", tags=["charm"])])
    b = learn(
        index, [Product("s2", "Tomato seeds heirloom", tags=["seeds"])], ids=[a[0].id], source="feedback"
    )
    assert a[0].id == b[0].id and index.learned is not None
    assert index.learned.applied_through == {"learn": a[0].id, "feedback": b[0].id}
    assert undo(index, [a[0].id], source="feedback") == b
    assert [j.product_id for j in index.learned.judgements] == ["s1"]
    undo(index, [a[0].id])
    assert run_json(index) == before


def test_pseudo_labels_only_products_the_exemplars_clearly_claim(index: TagIndex) -> None:
    from tagindex.retrain import PseudoLabelParams, pseudo_label

    pool = [
        Product("p1", "Sterling silver box chain necklace 18 inch"),  # among the necklace exemplars
        Product("p2", "Cordless drill driver 20V with battery"),
        Product("p3", "Tomato seeds heirloom variety pack"),  # no exemplar of seeds
        Product("l1", "Sterling silver chain necklace"),  # an exemplar itself: skipped
    ]
    kept, report = pseudo_label(index, pool, skip={"l1"})
    labels = {p.id: p.tags for p in kept}
    assert labels.get("p1") == ["jewellery", "necklace"]  # the path, root first, ending in the tag
    assert labels.get("p2") == ["tools", "drill"]
    assert "l1" not in labels
    assert report["candidates"] == 3 and report["kept"] == len(kept)
    # Deterministic; stricter thresholds keep a subset; impossible ones keep nothing.
    assert pseudo_label(index, pool, skip={"l1"})[0] == kept
    fewer, _ = pseudo_label(index, pool, PseudoLabelParams(min_probability=0.9), skip={"l1"})
    assert {p.id for p in fewer} <= set(labels)
    none, _ = pseudo_label(index, pool, PseudoLabelParams(min_probability=1.01), skip={"l1"})
    assert none == []
    # The cap keeps the most probable; with few classes allowed only tags with exemplars remain.
    capped, _ = pseudo_label(index, pool, PseudoLabelParams(min_probability=0.0, max_products=1))
    assert len(capped) == 1
    covered, _ = pseudo_label(index, pool, PseudoLabelParams(min_probability=0.0, max_tags=1))
    assert {p.tags[-1] for p in covered} <= {"necklace", "drill", "saw", "hose"}


def test_softmax_fit_separates_and_regularises() -> None:
    from tagindex.retrain import fit_softmax

    rng = np.random.default_rng(0)
    centres = np.eye(3, 8, dtype=np.float32) * 3
    x = np.concatenate([c + 0.3 * rng.standard_normal((20, 8)).astype(np.float32) for c in centres])
    y = np.repeat(np.arange(3), 20)
    w, b = fit_softmax(x, y, 3, c=100.0)
    assert ((x @ w + b).argmax(axis=1) == y).all()
    w_strong, _ = fit_softmax(x, y, 3, c=0.01)  # a strong L2 penalty shrinks the weights
    assert np.linalg.norm(w_strong) < 0.5 * np.linalg.norm(w)


def test_pseudo_labels_need_exemplars(encoder) -> None:
    from tagindex.retrain import pseudo_label

    cold = TagIndex.build(TAGS, TagIndexParams(), encoder=encoder)
    with pytest.raises(InputError, match="judged or labelled"):
        pseudo_label(cold, QUERIES)
