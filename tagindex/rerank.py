"""Cross-encoder reranking: the names of the former single module, kept importable from here.

Where each part lives now:

- :mod:`tagindex.candidates`: ``Candidate``, ``RankedCandidates`` and the run-file shape;
- :mod:`tagindex.cross_encoder`: the cross-encoder ``Reranker``, its parameters and score fusion;
- :mod:`tagindex.rerank_training`: training it on labelled products;
- :mod:`tagindex.pipeline`: the tagging pipeline that calls a reranker (``TaggingPipeline.rank``, once
  ``rank_candidates`` here).
"""

from __future__ import annotations

from tagindex.candidates import (
    Candidate,
    RankedCandidates,
    from_bi_encoder,
    positives_of,
    sigmoid,
    with_ancestors,
)
from tagindex.cross_encoder import (
    FORMAT_VERSION,
    KIND,
    Reranker,
    RerankerParams,
    ScoreFusion,
    fingerprint,
    index_key,
)
from tagindex.rerank_training import build_pairs, load_dev_ids, split_dev, train_reranker

Fusion = ScoreFusion  # the former name of the reranker's score fusion

__all__ = [
    "FORMAT_VERSION",
    "KIND",
    "Candidate",
    "Fusion",
    "RankedCandidates",
    "Reranker",
    "RerankerParams",
    "ScoreFusion",
    "build_pairs",
    "fingerprint",
    "from_bi_encoder",
    "index_key",
    "load_dev_ids",
    "positives_of",
    "sigmoid",
    "split_dev",
    "train_reranker",
    "with_ancestors",
]
