"""Runs a benchmarks module with the encoder text of before session 18 (no attribute labels), for A/B
runs of ``TextParams.attribute_labels`` on the same code:

    python -m benchmarks.without_attribute_labels benchmarks.run --tasks mwpd-zeroshot ... --out DIR
    python -m benchmarks.without_attribute_labels benchmarks.train_models --work WORK ...

Every ``TextParams`` made in the process then shows attribute names as given ("breadcrumb: ...").
"""

from __future__ import annotations

import runpy
import sys

import tagindex.config


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    tagindex.config.ATTRIBUTE_LABELS.clear()  # read by TextParams' default factory at each call
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
