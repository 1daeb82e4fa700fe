"""Seconds per e5-student distillation step with and without frozen token embeddings (interleaved).

Usage::

    OMP_NUM_THREADS=2 nice -n 10 python -m benchmarks.distill_freeze --model work/models/e5-small

``--model`` is the converted multilingual-e5-small (``tagindex.e5convert.convert_e5``). Each step
embeds 64 Chinese and 32 English taxonomy value names (the ``query: `` prompt, 32-token cap) and
takes an AdamW step; the two settings alternate so machine load hits both alike. Writes
``benchmarks/results/zh-e5-student/freeze-embeddings.json`` with ``uptime`` before/after.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml


def _names(path: Path) -> list[str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [str(v["name"]) for v in next(iter(data.values()))["values"].values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="work/models/e5-small")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/zh-e5-student/freeze-embeddings.json")
    args = parser.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    loc = Path(args.data) / "shopify-taxonomy" / "data" / "localizations" / "values"
    zh, en = _names(loc / "zh-CN.yml"), _names(loc / "en.yml")
    rng = random.Random(0)
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    def setup(freeze: bool) -> tuple[Any, Any, int]:
        model = SentenceTransformer(args.model, device="cpu", local_files_only=True)
        model.max_seq_length = 32
        for name, parameter in model.named_parameters():
            if freeze and name.endswith("word_embeddings.weight"):
                parameter.requires_grad_(False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        return model, torch.optim.AdamW(trainable, lr=1e-5), sum(p.numel() for p in trainable)

    def step(model: Any, optimizer: Any) -> float:
        batches = [rng.sample(zh, 64), rng.sample(en, 32)]
        start = time.perf_counter()
        loss = sum(
            (model(model.preprocess(["query: " + t for t in b]))["sentence_embedding"] ** 2).mean()
            for b in batches
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    runs = {freeze: setup(freeze) for freeze in (True, False)}
    for freeze in (True, False):
        step(*runs[freeze][:2])  # warm-up: allocates the optimizer state
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for freeze in (True, False):
            seconds[freeze].append(round(step(*runs[freeze][:2]), 3))
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": f"python -m benchmarks.distill_freeze --model {args.model} --rounds {args.rounds}",
        "frozen_s_per_step": seconds[True],
        "unfrozen_s_per_step": seconds[False],
        "trainable_frozen": runs[True][2],
        "trainable_unfrozen": runs[False][2],
        "max_rss_gb_both_models": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "uptime_before": uptime_before,
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
