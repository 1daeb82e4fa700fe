"""Zero-shot adaptation of a tag index to a shop's unlabelled catalog (`tagindex adapt`, issue 13)."""

from tagindex.adapt.adjust import ScoreAdjuster
from tagindex.adapt.params import AdaptParams
from tagindex.adapt.pipeline import AdaptResult, adapt, adapt_vectors, title_match_index

__all__ = ["AdaptParams", "AdaptResult", "ScoreAdjuster", "adapt", "adapt_vectors", "title_match_index"]
