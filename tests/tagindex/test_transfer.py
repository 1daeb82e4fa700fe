"""Transfer corpora (issue 13, step 5): other sources' labels and the catalog's breadcrumbs, not its tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagindex.errors import InputError
from tagindex.schema import Product
from tagindex.transfer import breadcrumb_corpus, mapping_corpus, transfer_corpus


def _catalog() -> list[Product]:
    crumbs = ["Shoes > Boots"] * 3 + ["Kitchen > Pans"] * 2 + ["Only One"] + ["Sale"] * 60 + [""] * 4
    return [
        Product(
            id=str(i),
            title=f"product {i}",
            attributes={"breadcrumb": c, "brand": "Acme"} if c else {"brand": "Acme"},
            tags=["gold-label-never-read"],
        )
        for i, c in enumerate(crumbs)
    ]


def test_breadcrumbs_become_tags_and_leave_the_text() -> None:
    products, tags = breadcrumb_corpus(_catalog(), min_products=2, max_share=0.1)
    names = {t.id: t.name for t in tags}
    # "Sale" covers 60 of 70 products (a site-wide section), "Only One" teaches nothing contrastive.
    strict = breadcrumb_corpus(_catalog(), min_products=2, max_share=0.01, floor=2)[1]
    assert [t.name for t in strict] == ["Kitchen > Pans"]
    assert sorted(names.values()) == ["Kitchen > Pans", "Shoes > Boots"]
    assert len(products) == 5
    for p in products:
        assert "breadcrumb" not in p.attributes and p.attributes == {"brand": "Acme"}
        assert [names[t] for t in p.tags] in (["Shoes > Boots"], ["Kitchen > Pans"])
        assert "gold-label-never-read" not in p.tags


def test_unknown_or_unusable_sources_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown transfer source"):
        transfer_corpus(["wikipedia"], tmp_path)
    with pytest.raises(InputError, match="needs the public data directory"):
        transfer_corpus(["mapping"], None)
    with pytest.raises(InputError, match="shopify_to_google_dev"):
        transfer_corpus(["mapping"], tmp_path)
    with pytest.raises(InputError, match="no labelled products"):
        transfer_corpus(["breadcrumbs"], None, [])


def test_mapping_pairs_climb_to_a_differently_named_google_category(shared_data: Path) -> None:
    products, tags = mapping_corpus(shared_data / "shopify-taxonomy")
    by_id = {t.id: t for t in tags}
    assert len(products) > 2000 and len(tags) > 5000
    assert all(t in by_id for p in products for t in p.tags)
    # The dev mapping keeps only pairs whose leaf names differ: nothing is a string match.
    same = sum(p.title.casefold() == by_id[p.tags[0]].name.casefold() for p in products)
    assert same / len(products) < 0.02


def test_mapping_context_names_the_parent_of_shared_leaf_names_only(shared_data: Path) -> None:
    plain, _ = mapping_corpus(shared_data / "shopify-taxonomy")
    products, _ = mapping_corpus(shared_data / "shopify-taxonomy", context=True)
    assert [p.title for p in products] == [p.title for p in plain] and not any(p.description for p in plain)
    described = {p.title: p.description for p in products if p.description}
    # "Hoodies" is a leaf under baby, activewear and clothing tops: each row says which one it is.
    hoodies = sorted(p.description for p in products if p.title == "Hoodies")
    assert "Baby & Toddler Tops" in hoodies and len(hoodies) == len(set(hoodies)) > 1
    assert 0 < len(described) < len(products) / 10  # unique leaf names stay bare


def test_attribute_tag_corpus_reads_train_splits_only(shared_data: Path) -> None:
    products, tags = transfer_corpus(["attribute-tags"], shared_data)
    assert len(tags) == 20
    test_titles = {
        json.loads(line)["input"].strip()
        for name in ("ae-110k", "oa-mine")
        for line in (shared_data / "attribute-tags" / name / "test.jsonl").read_text().splitlines()
        if line.strip()
    }
    train_only = {p.title for p in products} - test_titles
    assert len(train_only) > 0.95 * len(products)


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tagindex.cli", "-q", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_transfer_cli_writes_a_model_and_refuses_bad_input(
    shared_data: Path, tiny_model: Path, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in _catalog()))
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"max_rows": 64, "dev_exemplars": 20, "batch_size": 16}))
    out = tmp_path / "model"
    done = _cli(
        "transfer", "--data", shared_data, "--products", catalog, "--sources", "attribute-tags,breadcrumbs",
        "--base", tiny_model, "--config", config, "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sources"] == ["attribute-tags", "breadcrumbs"] and report["n_tags"] == 22
    manifest = json.loads((out / "tagindex_training.json").read_text())
    assert manifest["data"]["n_tags"] == 22 and manifest["train_params"]["max_rows"] == 64
    assert (out / "config.json").exists()

    # The first hour from it: an index on the transfer encoder learns a judgement at once.
    tags, judged, idx = tmp_path / "tags.jsonl", tmp_path / "judged.jsonl", tmp_path / "index"
    tags.write_text("".join(json.dumps({"id": t, "name": t}) + "\n" for t in ("Hiking Boots", "Frying Pans")))
    judged.write_text(json.dumps({"id": "j1", "title": "Trailblazer GTX", "tags": ["Frying Pans"]}) + "\n")
    assert _cli("index", "--tags", tags, "--model", out, "--out", idx).returncode == 0
    learned = _cli("learn", "--index", idx, "--products", judged)
    assert learned.returncode == 0, learned.stderr
    run = tmp_path / "run.jsonl"
    assert _cli("tag", "--index", idx, "--products", judged, "--out", run).returncode == 0
    assert json.loads(run.read_text())["tags"][0]["tag"] == "Frying Pans"  # the judged product follows it
    from tagindex.backends import trainable_model
    from tagindex.index import TagIndex

    # The index keeps an int8 export of the transfer encoder; `retrain` fine-tunes the encoder itself.
    assert trainable_model(TagIndex.load(idx).params.encoder.model) == str(out)

    missing = _cli("transfer", "--sources", "breadcrumbs", "--out", tmp_path / "m2")
    assert missing.returncode == 2 and "--products" in missing.stderr and "Traceback" not in missing.stderr
    unknown = _cli("transfer", "--data", shared_data, "--sources", "nope", "--out", tmp_path / "m3")
    assert unknown.returncode == 2 and "unknown transfer source" in unknown.stderr
    assert not (tmp_path / "m2").exists() and not (tmp_path / "m3").exists()
