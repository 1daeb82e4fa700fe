"""Duplicate tags: family masked before the top-k, siblings optional, pairs ranked by evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tagindex.duplicates import (
    OTHER,
    evidence_of,
    find_duplicates,
    name_similarity,
    name_words,
    nearest_pairs,
)
from tagindex.schema import Tag

# Apparel > Tops > Hoodies, Apparel > Sport > Hoodies (the same concept twice), siblings under Tops.
TAGS = [
    Tag("apparel", "Apparel"),
    Tag("tops", "Tops", parent="apparel"),
    Tag("sport", "Sportswear", parent="apparel"),
    Tag("hoodies", "Hoodies", parent="tops"),
    Tag("sweaters", "Sweaters", parent="tops"),
    Tag("sport-hoodies", "Hoodie", parent="sport"),
    Tag("sport-socks", "Sport Socks", parent="sport"),
]


def _unit(rows: list[list[float]]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def vectors() -> np.ndarray:
    # Every child is its parent's vector plus a little of its own (as path-encoded tags are), so the
    # nearest tags of each hoodie tag are its parent and sibling; the two share their own direction.
    e = np.eye(6, dtype=np.float32)
    apparel, tops, sport = e[0], e[0] + 0.2 * e[1], e[0] + 0.2 * e[2]
    rows = [
        apparel,
        tops,
        sport,
        tops + 0.1 * e[3],
        tops + 0.1 * e[4],
        sport + 0.1 * e[3],
        sport + 0.1 * e[5],
    ]
    return _unit([r.tolist() for r in rows])


def test_names_normalise_case_plurals_ampersand_and_order() -> None:
    assert name_words("Sweatshirts & Hoodies") == ["sweatshirt", "and", "hoodi"]
    # one key for both forms, whatever the ending (the old folder kept "dresse" apart from "dress")
    for plural, singular in [("Dresses", "dress"), ("Hoodies", "hoodie"), ("Batteries", "battery")]:
        assert name_words(plural) == name_words(singular)
        assert name_similarity(f"Summer {plural}", f"summer {singular}") == (1.0, True)
    assert name_words("Crème Brûlée") == ["creme", "brulee"]  # accents dropped before the fold
    assert name_similarity("Hoodies", "hoodie") == (1.0, True)
    assert name_similarity("Hoodies & Sweatshirts", "Sweatshirts and Hoodies") == (1.0, True)
    same_head, _ = name_similarity("Running Shoes", "Trail Running Shoes")
    other_head, _ = name_similarity("Mice & Trackballs", "Mice & Trackball Accessories")
    assert same_head > 0.6 and other_head < 0.5  # different head word: halved


def test_paths_match_on_word_keys_and_the_reason_shows_the_words_as_written() -> None:
    tags = [
        Tag("a", "Baby Accessories"),
        Tag("b", "Accessory & Battery Kits"),
        Tag("x", "Rattles", parent="a"),
        Tag("y", "Rattle", parent="b"),
    ]
    by_id = {t.id: t for t in tags}
    pair = evidence_of(by_id["x"], by_id["y"], 0.9, OTHER, by_id, None)
    assert pair.path_similarity == pytest.approx(1 / 4)  # accessori of {babi, accessori, batteri, kit}
    assert "paths share accessories" in pair.reasons  # not the key "accessori"
    assert pair.names_equal


def test_family_and_siblings_are_left_out_by_default(vectors: np.ndarray) -> None:
    pairs = find_duplicates(TAGS, vectors, min_score=0.8, neighbours=2)
    assert [(p.a, p.b) for p in pairs][0] == ("hoodies", "sport-hoodies")
    assert all(p.relation == "other" for p in pairs)
    top = pairs[0]
    assert top.names_equal and top.name_similarity == 1.0 and "same name" in top.reasons
    assert top.path_similarity > 0  # both under Apparel
    assert top.shared_products is None  # no exemplars given


def test_masking_before_top_k_finds_the_duplicate_behind_the_family(vectors: np.ndarray) -> None:
    # With one neighbour, the unfiltered scan pairs each hoodie tag with its parent or sibling only.
    family = find_duplicates(TAGS, vectors, 0.8, neighbours=1, include_family=True, include_siblings=True)
    assert ("hoodies", "sport-hoodies") not in {(p.a, p.b) for p in family}
    assert {p.relation for p in family} == {"parent_child"}
    masked = find_duplicates(TAGS, vectors, 0.8, neighbours=1)
    assert ("hoodies", "sport-hoodies") in {(p.a, p.b) for p in masked}


def test_siblings_on_request_are_labelled(vectors: np.ndarray) -> None:
    pairs = find_duplicates(TAGS, vectors, min_score=0.8, neighbours=3, include_siblings=True)
    relations = {(p.a, p.b): p.relation for p in pairs}
    assert relations[("hoodies", "sweaters")] == "sibling"
    assert "parent_child" not in relations.values() and "ancestor" not in relations.values()


def test_shared_products_add_evidence(vectors: np.ndarray) -> None:
    labels = [["hoodies", "sport-hoodies"], ["hoodies"], ["sport-hoodies"], ["sport-socks"]]
    pairs = find_duplicates(TAGS, vectors, 0.8, neighbours=2, exemplar_labels=labels)
    top = next(p for p in pairs if (p.a, p.b) == ("hoodies", "sport-hoodies"))
    assert top.shared_products == 1 and "1 labelled product(s) carry both" in top.reasons
    none_shared = find_duplicates(TAGS, vectors, 0.8, neighbours=2, exemplar_labels=[["sport-socks"]])
    weaker = next(p for p in none_shared if (p.a, p.b) == ("hoodies", "sport-hoodies"))
    assert weaker.shared_products == 0 and weaker.evidence < top.evidence


def test_scan_reports_progress_and_matches_a_brute_force_scan() -> None:
    rng = np.random.default_rng(3)
    x = _unit(rng.normal(size=(50, 8)).tolist())
    seen: list[tuple[int, int]] = []
    got = nearest_pairs(x, min_score=-1.0, neighbours=3, progress=lambda d, n: seen.append((d, n)), chunk=16)
    assert seen == [(16, 50), (32, 50), (48, 50), (50, 50)]
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    expected = set()
    for i in range(50):
        for j in np.argsort(-sims[i])[:3]:
            expected.add((min(i, int(j)), max(i, int(j))))
    assert set(got) == expected
    assert all(abs(s - float(sims[i, j])) < 1e-5 for (i, j), s in got.items())


def test_tag_and_vector_counts_must_agree(vectors: np.ndarray) -> None:
    with pytest.raises(ValueError, match="7 tags but 6 vectors"):
        find_duplicates(TAGS, vectors[:6])


def test_cli_prints_the_old_fields_then_the_evidence(encoder, tmp_path, capsys) -> None:
    from tagindex.cli import main
    from tagindex.index import TagIndex

    tags = [*TAGS, Tag("hooded", "Hooded Sweatshirts", parent="sport")]
    TagIndex.build(tags, encoder=encoder).save(tmp_path / "index")
    args = ["similar", "--index", str(tmp_path / "index"), "--duplicates", "--min-score", "0.5"]
    assert main([*args, "--top-k", "50"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and list(rows[0])[:5] == ["a", "a_name", "b", "b_name", "score"]
    assert {"a_path", "b_path", "relation", "evidence", "reasons", "shared_products"} <= set(rows[0])
    assert {r["relation"] for r in rows} == {"other"}
    assert [r["evidence"] for r in rows] == sorted((r["evidence"] for r in rows), reverse=True)
    assert main([*args, "--top-k", "50", "--include-siblings", "--include-family"]) == 0
    everything = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"parent_child", "sibling"} <= {r["relation"] for r in everything}
    assert main([*args, "--neighbours", "0"]) == 2  # a clear error, not a traceback
    assert "--neighbours must be at least 1" in capsys.readouterr().err
