"""Uniform weight average ("model soup", Wortsman et al. 2022) of encoders fine-tuned from one start.

Used to test whether averaging `tagindex transfer` models trained with different seeds removes the
seed variance of `adapt` (docs/benchmarks.md, "Transfer"). The output directory is a copy of the
first model with averaged weights, loadable wherever ``--model`` is.

Usage::

    python -m benchmarks.transfer_soup OUT_DIR MODEL_DIR MODEL_DIR [...]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def soup(out: Path, models: list[Path]) -> None:
    """Writes ``out``: ``models[0]`` with every weight replaced by the mean over ``models``."""
    from safetensors.torch import load_file, save_file

    states = [load_file(str(m / "model.safetensors")) for m in models]
    keys = set(states[0])
    for m, state in zip(models, states, strict=True):
        if set(state) != keys:
            raise SystemExit(f"{m}: its weights do not match {models[0]}'s (not the same architecture)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(models[0], tmp)
    mean = {k: (sum(s[k].float() for s in states) / len(states)).to(states[0][k].dtype) for k in keys}
    save_file({k: v.contiguous() for k, v in mean.items()}, str(tmp / "model.safetensors"), {"format": "pt"})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("models", type=Path, nargs="+")
    args = ap.parse_args()
    soup(args.out, args.models)
    print(f"wrote {args.out}: mean of {len(args.models)} models")


if __name__ == "__main__":
    main()
