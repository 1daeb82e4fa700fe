"""How soon a merchandiser's judgement changes the service's answer (issue #14: within one second).

One ``uvicorn`` process serves the MWPD vocabulary (394 GS1 tags, packaged MiniLM) with online
learning on (the default). For each of ``--n`` MWPD validation offers the script asks ``POST /v1/tag``
for its top tag, then sends ``POST /v1/feedback`` adding the gold level-3 tag (and rejecting the old top
tag when it was wrong) and asks ``/v1/tag`` again at once. It reports:

- whether that very next answer already has the judged tag first (no polling: the judgement is applied
  before ``/v1/feedback`` returns),
- the time from sending the judgement to receiving that changed answer (median, p95, max),
- the feedback call alone (it stores the rows in SQLite and saves the new index version atomically).

Example:
    python -m benchmarks.feedback_latency --n 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.service_hostile import API_KEY, REPO, RESULTS, Server, build_index


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="folder holding mwpd/")
    p.add_argument("--n", type=int, default=50, help="judged offers")
    p.add_argument("--out", default=str(RESULTS / "feedback_latency.json"))
    return p.parse_args(argv)


def _top(client: httpx.Client, product: dict[str, Any]) -> list[str]:
    r = client.post("/v1/tag", json={"product": product, "top_k": 5})
    r.raise_for_status()
    return [t["tag"] for t in r.json()["results"][0]["tags"]]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="feedback-latency-") as tmp:
        work = Path(tmp)
        index = build_index(Path(args.data), work)
        offers = [json.loads(line) for line in (work / "mwpd" / "validation.jsonl").open()][: args.n]
        server = Server(index, work / "server.log")
        rows = []
        try:
            headers = {"X-API-Key": API_KEY}
            with httpx.Client(base_url=server.url, timeout=60, headers=headers) as client:
                for offer in offers:
                    product = {"id": f"judged-{offer['id']}", "title": offer["title"]}
                    gold = offer["tags"][-1]  # the level-3 GS1 tag (tags run from level 1 down)
                    before = _top(client, product)
                    judgements = [{"tag": gold, "action": "add"}]
                    if before[0] != gold:
                        judgements.append({"tag": before[0], "action": "reject"})
                    start = time.perf_counter()
                    r = client.post("/v1/feedback", json={"product": product, "judgements": judgements})
                    stored = time.perf_counter()
                    r.raise_for_status()
                    after = _top(client, product)
                    answered = time.perf_counter()
                    rows.append(
                        {
                            "was_top": before[0] == gold,
                            "next_answer_has_it_first": after[0] == gold,
                            "feedback_s": stored - start,
                            "judgement_to_changed_answer_s": answered - start,
                        }
                    )
        finally:
            server.close()
    changed = [r["judgement_to_changed_answer_s"] for r in rows]
    feedback = [r["feedback_s"] for r in rows]
    result = {
        "n": len(rows),
        "already_top_before": sum(r["was_top"] for r in rows),
        "next_answer_has_it_first": sum(r["next_answer_has_it_first"] for r in rows),
        "judgement_to_changed_answer_s": {
            "median": statistics.median(changed),
            "p95": _pct(changed, 0.95),
            "max": max(changed),
        },
        "feedback_call_s": {"median": statistics.median(feedback), "p95": _pct(feedback, 0.95)},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    c, f = result["judgement_to_changed_answer_s"], result["feedback_call_s"]
    print("| judged | next answer has it first | judgement -> changed answer (median / p95 / max) |")
    print("|---|---|---|")
    print(
        f"| {result['n']} | {result['next_answer_has_it_first']} | "
        f"{c['median'] * 1000:.0f} / {c['p95'] * 1000:.0f} / {c['max'] * 1000:.0f} ms |"
    )
    print(f"feedback call alone: median {f['median'] * 1000:.0f} ms, p95 {f['p95'] * 1000:.0f} ms")
    print(f"load average before {load_before[0]:.2f}, after {result['load_average_after'][0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
