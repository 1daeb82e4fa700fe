"""LiveLearner: feedback rows teach the engine's index at once, deletes undo them, sync after a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tagindex.service.engine import Engine
from tagindex.service.feedback import FeedbackRecord, FeedbackStore
from tagindex.service.learning import LiveLearner, ReviewPool

from tagindex.index import TagIndex
from tagindex.store import read_manifest

pytestmark = pytest.mark.slow  # the real encoder and a real index

JEWEL = "64010100_Jewellery"


@pytest.fixture()
def live(built_index: Path, svc_encoder, tmp_path: Path):
    index_dir = tmp_path / "index"
    shutil.copytree(built_index, index_dir)
    engine = Engine(index_dir, TagIndex.load(index_dir, encoder=svc_encoder))
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    yield engine, store, LiveLearner(engine, store)
    engine.close()
    store.close()


def answer(engine: Engine, products) -> str:
    results, _, _ = engine.tag(products, top_k=5, include_ancestors=True)
    return json.dumps([r.to_dict() for r in results], sort_keys=True)


def test_feedback_changes_the_next_answer_and_delete_restores_it(live, svc_encoder, tmp_path: Path) -> None:
    from tagindex.schema import Product

    engine, store, learner = live
    charm = Product("p1", "Sterling silver angel wing charm pendant")
    twin = Product("p2", "Sterling silver angel wing charm pendant")  # another product, same text
    before = answer(engine, [charm, twin])
    top = json.loads(before)[0]["tags"][0]["tag"]
    judged = [FeedbackRecord("p1", charm.title, JEWEL, "add")]
    if top != JEWEL:
        judged.append(FeedbackRecord("p1", charm.title, top, "reject"))
    rows = store.add(judged)
    assert learner.apply(rows) == len(rows)
    after = json.loads(answer(engine, [charm, twin]))
    for result in after:
        tags = [t["tag"] for t in result["tags"]]
        assert tags[0] == JEWEL and (top == JEWEL or top not in tags)
    # Saved with the index: a fresh load answers the same and carries the version.
    manifest = read_manifest(engine.index_dir, "tagindex")
    assert manifest["index_version"] == learner.version >= 1
    reloaded = Engine(engine.index_dir, TagIndex.load(engine.index_dir, encoder=svc_encoder))
    assert answer(reloaded, [charm, twin]) == json.dumps(after, sort_keys=True)
    reloaded.close()

    assert learner.delete([r.id for r in rows] + [999]) == sorted(r.id for r in rows)
    assert answer(engine, [charm, twin]) == before
    assert store.count() == 0


def test_sync_learns_rows_committed_before_a_crash_and_undoes_deleted_ones(live, svc_encoder) -> None:
    engine, store, learner = live
    first = store.add([FeedbackRecord("a", "Gold hoop earrings", JEWEL, "accept")])
    learner.apply(first)
    # Rows committed while the service was down (or killed before its save), and a row deleted.
    late = store.add([FeedbackRecord("b", "Silver stud earrings", JEWEL, "add")])
    store.delete([first[0].id])
    fresh = Engine(engine.index_dir, TagIndex.load(engine.index_dir, encoder=svc_encoder))
    synced = LiveLearner(fresh, store).sync()
    assert synced == {"learned": 1, "undone": 1}
    state = fresh.index.learned
    assert state is not None and [j.id for j in state.judgements] == [late[0].id]
    assert LiveLearner(fresh, store).sync() == {"learned": 0, "undone": 0}
    fresh.close()


def test_review_pool_skips_judged_products(live, mwpd_converted: Path, tmp_path: Path) -> None:
    engine, store, _ = live
    pool_file = tmp_path / "pool.jsonl"
    with (mwpd_converted / "validation.jsonl").open() as f:
        pool_file.write_text("".join(line for line, _ in zip(f, range(40), strict=False)))
    pool = ReviewPool(pool_file, tmp_path / "cache")
    first = pool.next(engine, store, 5)
    assert len(first) == 5 and all(q.reason for q in first)
    assert [q.id for q in pool.next(engine, store, 5)] == [q.id for q in first]  # deterministic
    store.add([FeedbackRecord(first[0].id, "x", JEWEL, "add")])
    assert first[0].id not in {q.id for q in pool.next(engine, store, 5)}
