"""Product–attribute–tag graph, graph embeddings (node2vec, GraphSAGE) and their fusion with text vectors.

Stages, one module each: :mod:`tagindex.graph.build` (typed networkx graph, saved as Parquet edge lists),
:mod:`tagindex.graph.walks` (pure-torch node2vec biased random walks),
:mod:`tagindex.graph.embed` (node2vec and
GraphSAGE link prediction with torch-geometric) and :mod:`tagindex.graph.fusion` (text + graph vectors, with
inductive graph vectors for products that are not in the graph).
"""

from __future__ import annotations

# Embedding methods of :mod:`tagindex.graph.embed`, here so the CLI can list them without importing torch.
METHODS = ("node2vec", "sage")
