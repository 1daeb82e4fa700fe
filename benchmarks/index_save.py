"""Time of one index save (a tag write in the service, ``tagindex update``) with an encoder directory
inside the index: the encoder files hard-linked from the previous version (what saves do now) beside
copying them (what saves did before), in one process on the same index.

The encoder is a stand-in (hashed words, no torch) because only the files on disk matter here; the
encoder directory is a real copy of the packaged MiniLM (about 90 MB).

    python -m benchmarks.index_save --saves 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from tagindex.config import EncoderParams, TagIndexParams
from tagindex.encoders import Encoder, resolve_model_path
from tagindex.index import TagIndex
from tagindex.schema import Tag

RESULTS = Path(__file__).parent / "results" / "index_save.json"


class _WordHashEncoder(Encoder):
    def __init__(self, model: str) -> None:
        self.params = EncoderParams(model=model)

    @property
    def dim(self) -> int:
        return 384

    def encode(self, texts, show_progress: bool = False) -> np.ndarray:  # type: ignore[no-untyped-def]
        rng = [np.random.default_rng(abs(hash(t)) % 2**32) for t in texts]
        out = np.stack([r.standard_normal(self.dim) for r in rng]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def time_saves(work: Path, n_tags: int, saves: int, link: bool) -> list[float]:
    model = work / "model"
    if not model.exists():
        shutil.copytree(resolve_model_path("packaged:all-MiniLM-L6-v2"), model)
    params = TagIndexParams()
    params.encoder.model = str(model)
    tags = [Tag(f"t{i}", f"tag number {i}") for i in range(n_tags)]
    target = work / ("idx-link" if link else "idx-copy")
    TagIndex.build(tags, params, encoder=_WordHashEncoder(str(model))).save(target)
    index = TagIndex.load(target, encoder=_WordHashEncoder(str(model)))
    times = []
    patch = mock.patch("tagindex.index.link_or_copy_tree", shutil.copytree) if not link else None
    if patch:
        patch.start()
    try:
        for i in range(saves):
            index.add_tags([Tag(f"new{i}", f"new tag {i}")])
            start = time.perf_counter()
            index.save(target)
            times.append(time.perf_counter() - start)
    finally:
        if patch:
            patch.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--tags", type=int, default=400)
    args = parser.parse_args()
    uptime_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = {}
        for label, link in (("copy encoder (before)", False), ("hard-link encoder (now)", True)):
            times = time_saves(work, args.tags, args.saves, link)
            rows[label] = {"median_s": statistics.median(times), "times_s": times}
    result = {
        "saves": args.saves,
        "tags": args.tags,
        "rows": rows,
        "loadavg_before": uptime_before,
        "loadavg_after": os.getloadavg(),
        "note": "shared 2-core machine; I/O and sha256 bound; rerun alone for a final figure",
    }
    print(f"{'save with encoder/ in the index':<28} {'median s':>9}")
    for label, row in rows.items():
        print(f"{label:<28} {row['median_s']:>9.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
