"""CLI: ``tagindex learn``, ``review-queue`` and ``retrain`` on a small real MWPD slice."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tagindex.cli import main
from tagindex.io import load_products, load_tags, write_jsonl
from tagindex.store import read_manifest


@pytest.fixture(scope="module")
def slice_dir(mwpd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 MWPD training offers, the tags they use, 30 pool offers and a tag-only index."""
    out = tmp_path_factory.mktemp("learn-cli")
    train = load_products(mwpd_dir / "train.jsonl")
    used = {t for p in train[:78] for t in p.tags}
    tags = [t for t in load_tags(mwpd_dir / "tags.jsonl") if t.id in used]
    write_jsonl(out / "tags.jsonl", (t.to_dict() for t in tags))
    write_jsonl(out / "judged.jsonl", (p.to_dict() for p in train[:48]))
    write_jsonl(out / "pool.jsonl", ({**p.to_dict(), "tags": []} for p in train[48:78]))
    assert main(["-q", "index", "--tags", str(out / "tags.jsonl"), "--out", str(out / "index")]) == 0
    return out


def run_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_learn_review_queue_and_undo_through_the_cli(slice_dir: Path, tmp_path: Path) -> None:
    import shutil

    index = tmp_path / "index"
    shutil.copytree(slice_dir / "index", index)
    pool = slice_dir / "pool.jsonl"
    assert (
        main(
            ["-q", "tag", "--index", str(index), "--products", str(pool), "--out", str(tmp_path / "a.jsonl")]
        )
        == 0
    )
    before = (tmp_path / "a.jsonl").read_text()

    # Judged products: tags = accepted; one product also rejects a tag.
    rows = run_lines(slice_dir / "judged.jsonl")[:10]
    wrong = next(t["id"] for t in run_lines(slice_dir / "tags.jsonl") if t["id"] not in rows[0]["tags"])
    rows[0]["rejected"] = [wrong]
    write_jsonl(tmp_path / "judged.jsonl", rows)
    assert main(["-q", "learn", "--index", str(index), "--products", str(tmp_path / "judged.jsonl")]) == 0
    manifest = read_manifest(index, "tagindex")
    assert manifest["index_version"] == 1 and manifest["learned"]["products"] == 10
    assert (
        main(
            ["-q", "tag", "--index", str(index), "--products", str(pool), "--out", str(tmp_path / "b.jsonl")]
        )
        == 0
    )
    assert (tmp_path / "b.jsonl").read_text() != before

    queue = tmp_path / "queue.jsonl"
    args = [
        "-q",
        "review-queue",
        "--index",
        str(index),
        "--products",
        str(pool),
        "--n",
        "5",
        "--out",
        str(queue),
    ]
    assert main(args) == 0
    picks = run_lines(queue)
    assert len(picks) == 5 and all({"id", "tags", "reason"} <= set(p) and p["reason"] for p in picks)
    assert main([*args[:-1], str(tmp_path / "q2.jsonl")]) == 0
    assert (tmp_path / "q2.jsonl").read_text() == queue.read_text()  # same seed, same queue

    # Undo every judgement: the run is byte-identical to the one before learning.
    ids = [str(i) for i in range(1, manifest["learned"]["judgements"] + 1)]
    learn_ = ["-q", "learn", "--index", str(index)]
    empty = tmp_path / "none.jsonl"
    write_jsonl(empty, [{"id": rows[0]["id"], "title": rows[0]["title"], "rejected": []}])
    assert main([*learn_, "--products", str(empty)]) == 2  # no judgement in the file
    assert main([*learn_, "--undo", "999"]) == 2  # no such judgement: nothing changes
    assert main([*learn_, "--undo", *ids]) == 0
    again = ["-q", "tag", "--index", str(index), "--products", str(pool), "--out", str(tmp_path / "c.jsonl")]
    assert main(again) == 0
    assert (tmp_path / "c.jsonl").read_text() == before
    assert read_manifest(index, "tagindex")["index_version"] == 2


def test_learn_refuses_bad_input_with_one_line(slice_dir: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "title": "x", "tags": ["no-such-tag"]}\n')
    assert main(["-q", "learn", "--index", str(slice_dir / "index"), "--products", str(bad)]) == 2
    # One error line (a model-loading progress bar may precede it when another test loaded a model).
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tagindex")]
    assert len(err) == 1 and err[0].startswith("tagindex learn: error:") and "not in the index" in err[0]
    bad.write_text('{"id": "1", "title": "x", "rejected": "[1, {}]"}\n')
    assert main(["-q", "learn", "--index", str(slice_dir / "index"), "--products", str(bad)]) == 2
    assert (
        main(
            [
                "-q",
                "review-queue",
                "--index",
                str(slice_dir / "index"),
                "--products",
                str(bad),
                "--n",
                "0",
                "--out",
                str(tmp_path / "q"),
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_retrain_from_a_feedback_database_writes_a_new_version(
    slice_dir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from tagindex.service.feedback import FeedbackRecord, FeedbackStore

    from tagindex.index import TagIndex

    # The index encodes with the tiny model (an int8 export of it, the default backend), so retraining
    # fine-tunes the export's source in seconds: the command's files and bookkeeping are tested here.
    index = tmp_path / "v1"
    tags = str(slice_dir / "tags.jsonl")
    assert main(["-q", "index", "--tags", tags, "--out", str(index), "--model", str(tiny_model)]) == 0
    # 10 products judged through `tagindex learn` (the index's own log), 20 more in a feedback database.
    rows = run_lines(slice_dir / "judged.jsonl")
    write_jsonl(tmp_path / "first.jsonl", rows[:10])
    assert main(["-q", "learn", "--index", str(index), "--products", str(tmp_path / "first.jsonl")]) == 0
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    for p in rows[10:30]:
        store.add([FeedbackRecord(p["id"], p["title"], t, "add", p["description"]) for t in p["tags"]])
    store.close()
    config = {
        "epochs": 1,
        "batch_size": 8,
        "max_per_tag": 2,
        "min_per_tag": 1,
        "pseudo_products": False,
        "dev_fraction": 0.2,
        "dev_exemplars": 16,
        "max_seq_length": 32,
        "max_rows": 48,
    }
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    out = tmp_path / "v2"
    args = [
        "-q",
        "retrain",
        "--index",
        str(index),
        "--feedback",
        str(tmp_path / "fb.sqlite3"),
        "--out",
        str(out),
        "--config",
        str(tmp_path / "cfg.json"),
    ]
    # Self-training on the 30 unjudged pool offers; a threshold of 0 keeps every one of them.
    pool = ["--pool", str(slice_dir / "pool.jsonl"), "--pseudo-min-probability", "0"]
    assert main([*args, *pool]) == 0
    manifest = read_manifest(out, "tagindex")
    report = manifest["retrain"]
    assert report["held_out"] == 6 and report["trained_on"] == 24 + 30
    assert report["pseudo_labelled"]["kept"] == 30 and report["pseudo_labelled"]["candidates"] == 30
    assert (
        set(report["held_out_metrics"]) == {"old", "new"} and "recall@1" in report["held_out_metrics"]["new"]
    )
    assert manifest["index_version"] == 1 + read_manifest(index, "tagindex")["index_version"] == 2
    new = TagIndex.load(out)
    assert new.learned is not None and len(new.learned.products) == 30  # every judgement, held-out ones too
    assert (manifest.root / "encoder").is_dir()  # the fine-tuned encoder travels with the index
    # An index without judgements and a database without any: nothing to train on, refused.
    assert main([*args, "--pseudo-min-probability", "2"]) == 2  # refused before anything is written
    sqlite3.connect(tmp_path / "empty.sqlite3").close()
    FeedbackStore(tmp_path / "empty.sqlite3").close()
    assert (
        main(
            [
                *args[:3],
                str(slice_dir / "index"),
                "--feedback",
                str(tmp_path / "empty.sqlite3"),
                "--out",
                str(tmp_path / "v3"),
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_retrain_of_a_coded_index_codes_the_new_exemplars_alike(
    slice_dir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from tagindex.index import TagIndex

    # 48 labelled products as ivf-sq8 exemplars of a tiny-model index; retrained on them (no feedback).
    index, products = tmp_path / "v1", str(slice_dir / "judged.jsonl")
    tags = str(slice_dir / "tags.jsonl")
    assert main(["-q", "index", "--tags", tags, "--out", str(index), "--model", str(tiny_model),
                 "--products", products, "--exemplar-codes", "ivf-sq8"]) == 0  # fmt: skip
    config = {"epochs": 1, "batch_size": 8, "max_per_tag": 2, "min_per_tag": 1, "pseudo_products": False,
              "dev_fraction": 0.2, "dev_exemplars": 16, "max_seq_length": 32, "max_rows": 48}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    out = tmp_path / "v2"
    assert main(["-q", "retrain", "--index", str(index), "--products", products, "--out", str(out),
                 "--config", str(tmp_path / "cfg.json")]) == 0  # fmt: skip
    new = TagIndex.load(out)
    assert new.exemplar_storage == "ivf-sq8" and new.n_exemplars == 48
    assert read_manifest(out, "tagindex")["exemplar_storage"]["kind"] == "ivf-sq8"
