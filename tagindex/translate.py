"""Word-by-word dictionary translation of Chinese text into English, for English-only encoders.

A baseline beside the distilled student (``tagindex.distill``): Chinese runs are segmented by greedy
longest match against a lexicon and each word is replaced by its first English gloss; everything
else (Latin text, digits, punctuation such as the `` > `` of a category path) is kept. The lexicon is
built from the same parallel text the distiller reads: the taxonomy's attribute and value names
first (product vocabulary), then CC-CEDICT's first senses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from tagindex.distill import ParallelPair
from tagindex.text import normalize_text

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
