from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tagindex import Product, Tag, TagIndex, TagIndexParams
from tagindex.store import IndexFormatError, read_manifest

TAGS = [
    Tag("clothing", "Clothing", kind="category"),
    Tag("shoes", "Shoes", parent="clothing", kind="category"),
    Tag("running-shoes", "Running Shoes", parent="shoes", kind="category"),
    Tag("kitchen", "Kitchen", kind="category"),
    Tag("knives", "Kitchen Knives", parent="kitchen", kind="category", synonyms=["chef knife"]),
    Tag("coffee", "Coffee Makers", parent="kitchen", kind="category"),
    Tag("lightweight", "Lightweight", description="weighs little, easy to carry", kind="keyword"),
]
PRODUCTS = [
    Product("p1", "Nike Air Zoom Pegasus men's running sneaker", "Responsive cushioning for road runs"),
    Product("p2", "Wusthof Classic 8-inch chef's knife", "Forged stainless steel blade"),
    Product("p3", "Breville espresso machine with milk frother"),
]


@pytest.fixture(scope="module")
def index(encoder) -> TagIndex:
    return TagIndex.build(TAGS, encoder=encoder)


def test_tags_real_products_sensibly(index: TagIndex) -> None:
    results = index.tag(PRODUCTS, top_k=3)
    assert [r.id for r in results] == ["p1", "p2", "p3"]
    assert results[0].tags[0].tag == "running-shoes"
    assert results[1].tags[0].tag == "knives"
    assert results[2].tags[0].tag == "coffee"
    for r in results:
        scores = [t.score for t in r.tags]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3


def test_threshold_and_ancestors(index: TagIndex) -> None:
    result = index.tag_one(PRODUCTS[0], top_k=1, include_ancestors=True)
    assert [t.tag for t in result.tags] == ["running-shoes", "shoes", "clothing"]
    assert result.tags[1].ancestor_of == "running-shoes"
    assert len({t.score for t in result.tags}) == 1
    top = result.tags[0].score
    assert all(t.score >= top for t in index.tag_one(PRODUCTS[0], top_k=7, threshold=top).tags)


def test_results_match_exact_oracle(index: TagIndex) -> None:
    from tagindex.vector_index import exact_search

    vectors = index.encode_products(PRODUCTS)
    scores, ids = index.search(vectors, 4)
    tag_vectors = np.stack([index.tag_vector(t.id) for t in index.tags])
    o_scores, o_idx = exact_search(vectors, tag_vectors, 4)
    assert ids == [[index.tags[i].id for i in row] for row in o_idx.tolist()]
    assert np.allclose(scores, o_scores, atol=1e-5)


def test_similar_by_id_excludes_itself_and_by_text(index: TagIndex) -> None:
    hits = index.similar("knives", top_k=3)
    assert "knives" not in [h.tag for h in hits] and len(hits) == 3
    assert index.similar("trail running footwear", top_k=1)[0].tag in {"running-shoes", "shoes"}


def test_duplicates_finds_near_identical_tags(encoder) -> None:
    tags = [*TAGS, Tag("knives-2", "Kitchen knives", parent="kitchen")]
    pairs = TagIndex.build(tags, encoder=encoder).duplicates(min_score=0.9)
    assert pairs[0][:2] == ("knives", "knives-2")


def test_add_and_remove_without_rebuild(encoder, tmp_path: Path) -> None:
    index = TagIndex.build(TAGS, encoder=encoder)
    index.add_tags([Tag("tents", "Camping Tents"), Tag("dome", "Dome Tents", parent="tents")])
    product = Product("x", "Coleman 4-person dome tent for camping")
    assert index.tag_one(product, top_k=1).tags[0].tag == "dome"
    with pytest.raises(ValueError, match="already present"):
        index.add_tags([Tag("tents", "again")])
    with pytest.raises(ValueError, match="not in the index"):
        index.add_tags([Tag("x", "X", parent="missing")])
    with pytest.raises(ValueError, match="child of a tag being removed"):
        index.remove_tags(["tents"])
    assert index.remove_tags(["tents"], cascade=True) == ["dome", "tents"]
    assert "dome" not in [t.tag for t in index.tag_one(product, top_k=7).tags]
    index.save(tmp_path / "idx")
    loaded = TagIndex.load(tmp_path / "idx", encoder=encoder)
    assert len(loaded) == len(TAGS)
    loaded.add_tags([Tag("tents", "Camping Tents")])  # new int id must not clash after reload
    assert loaded.tag_one(product, top_k=1).tags[0].tag == "tents"


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_save_load_round_trip(encoder, tmp_path: Path, kind: str) -> None:
    params = TagIndexParams()
    params.index.kind = kind
    index = TagIndex.build(TAGS, params, encoder=encoder)
    index.save(tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx", "tagindex", verify=False)
    assert manifest["n_tags"] == len(TAGS) and manifest["dim"] == 384
    assert set(manifest["files"]) == {"tags.parquet", "tag_vectors.safetensors", "tags.faiss"}
    loaded = TagIndex.load(tmp_path / "idx", encoder=encoder)
    assert [t.to_dict() for t in loaded.tags] == [t.to_dict() for t in index.tags]
    assert [r.to_dict() for r in loaded.tag(PRODUCTS, top_k=3)] == [
        r.to_dict() for r in index.tag(PRODUCTS, top_k=3)
    ]


def test_corrupted_index_is_refused(encoder, tmp_path: Path) -> None:
    TagIndex.build(TAGS, encoder=encoder).save(tmp_path / "idx")
    with (read_manifest(tmp_path / "idx", "tagindex").root / "tags.faiss").open("ab") as f:
        f.write(b"garbage")
    with pytest.raises(IndexFormatError, match="tags.faiss: checksum mismatch"):
        TagIndex.load(tmp_path / "idx", encoder=encoder)
    with pytest.raises(IndexFormatError, match="no manifest.json"):
        TagIndex.load(tmp_path, encoder=encoder)


def test_failed_save_keeps_the_previous_index(
    encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = TagIndex.build(TAGS, encoder=encoder)
    index.save(tmp_path / "idx")
    before = read_manifest(tmp_path / "idx", "tagindex")
    index.add_tags([Tag("new", "New tag")])

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("tagindex.index.save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path / "idx")
    assert read_manifest(tmp_path / "idx", "tagindex") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    assert len(TagIndex.load(tmp_path / "idx", encoder=encoder)) == len(TAGS)


def test_fine_tuned_model_directory_is_copied_into_the_index(encoder, tmp_path: Path) -> None:
    from tagindex.encoders import resolve_model_path

    model_dir = tmp_path / "my-model"
    shutil.copytree(resolve_model_path("packaged:all-MiniLM-L6-v2"), model_dir)
    params = TagIndexParams()
    params.encoder.model = str(model_dir)
    TagIndex.build(TAGS[:2], params).save(tmp_path / "idx")
    shutil.rmtree(model_dir)
    loaded = TagIndex.load(tmp_path / "idx")
    assert loaded.params.encoder.model == str(read_manifest(tmp_path / "idx", "tagindex").root / "encoder")
    assert loaded.tag_one(PRODUCTS[0], top_k=1).tags[0].tag == "shoes"


def test_empty_index_refuses_to_tag(encoder) -> None:
    with pytest.raises(ValueError, match="no tags"):
        TagIndex(encoder=encoder).tag(PRODUCTS)


def test_vector_cache_reuses_vectors_across_instances(encoder, tmp_path: Path) -> None:
    from tagindex.encoders import VectorCache

    texts = ["red running shoe", "chef knife", "red running shoe"]
    first = VectorCache(tmp_path, encoder).encode(texts)
    assert first.shape == (3, encoder.dim) and np.allclose(first[0], first[2])
    calls: list[int] = []

    class Counting:
        dim, fingerprint = encoder.dim, encoder.fingerprint

        def encode(self, batch, show_progress=False):
            calls.append(len(batch))
            return encoder.encode(batch)

    again = VectorCache(tmp_path, Counting()).encode(["chef knife", "espresso machine"])  # type: ignore[arg-type]
    assert calls == [1]
    assert np.allclose(again[0], first[1], atol=1e-6)
    assert sorted(p.name for p in (tmp_path / encoder.fingerprint()).iterdir()) == ["cache.npz"]
