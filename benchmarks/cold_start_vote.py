"""One judgement on a cold index: how many other products does the judged tag take over?

The first judgement a merchandiser makes turns one product into the index's only exemplar. The
exemplar vote is a softmax over the k nearest exemplars; with fewer than k of them, the old vote gave
a lone exemplar the whole vote of every product. Since session 4 the missing neighbours count as near
as the product's best-matching tag text (tagindex/exemplars.py, ``votes``). ``k=1`` reproduces the old
behaviour exactly (a softmax over the one exemplar there is), so both run here in one process:

    python -m benchmarks.cold_start_vote --n 300

MWPD validation offers, all 394 GS1 tags, packaged MiniLM; the first offer is judged with its gold
level-3 tag through ``tagindex.learn`` and the other offers are tagged (top-1).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.service_hostile import REPO, RESULTS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="folder holding mwpd/")
    p.add_argument("--n", type=int, default=300, help="validation offers (the first one is judged)")
    p.add_argument("--out", default=str(RESULTS / "cold_start_vote.json"))
    args = p.parse_args(argv)

    from tagindex.convert import convert
    from tagindex.encoders import load_encoder
    from tagindex.index import TagIndex
    from tagindex.io import load_products, load_tags
    from tagindex.learn import learn
    from tagindex.schema import Product

    work = Path(tempfile.mkdtemp(prefix="cold-start-"))
    convert("mwpd", Path(args.data) / "mwpd", work)
    tags = load_tags(work / "tags.jsonl")
    offers = load_products(work / "validation.jsonl")[: args.n]
    judged, rest = offers[0], offers[1:]
    gold = judged.tags[-1]
    encoder = load_encoder()
    rows = []
    for name, k in (("padded vote (now), k=20", 20), ("plain softmax (before), same as k=1", 1)):
        index = TagIndex.build(tags, encoder=encoder)
        index.params.exemplars.k = k
        learn(index, [Product("judged", judged.title, judged.description, judged.attributes, [gold])])
        results = index.tag([Product(o.id, o.title, o.description, o.attributes) for o in rest], top_k=1)
        rows.append(
            {
                "vote": name,
                "judged_tag_top1": sum(r.tags[0].tag == gold for r in results),
                "offers": len(rest),
                "offers_whose_gold_has_it": sum(gold in o.tags for o in rest),
            }
        )
    result = {"judged_offer": judged.id, "judged_tag": gold, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"one judgement: offer {judged.id} -> {gold}")
    print("| vote | other offers whose top-1 becomes the judged tag | offers whose gold has it |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['vote']} | {r['judged_tag_top1']} / {r['offers']} | {r['offers_whose_gold_has_it']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
