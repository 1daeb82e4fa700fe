"""PECOS XR-Linear worker, run inside benchmarks/.venv-pecos (numpy<2), driven over stdin/stdout.

The benchmark process never imports PECOS. It writes sparse matrices as ``.npz`` files (scipy's
``save_npz``: no pickle), then sends one JSON request per line and reads one JSON reply per line:

- ``{"cmd": "train", "X": path, "Y": path}`` -> ``{"ok": true, "seconds": ...}``
- ``{"cmd": "predict", "X": path, "out": path, "k": 10}`` -> ``{"ok": true, "seconds": ...}``;
  ``out`` holds the top-k label scores as a CSR matrix (rows = products, columns = labels)
- ``{"cmd": "stats"}`` -> ``{"ok": true, "maxrss_mb": ..., "versions": {...}}``

Errors come back as ``{"ok": false, "error": ...}``; end of input stops the worker.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback

import numpy as np
import scipy
import scipy.sparse as sp
from pecos.xmc.xlinear.model import XLinearModel


def main() -> None:
    model = None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            start = time.perf_counter()
            if req["cmd"] == "train":
                X = sp.load_npz(req["X"]).tocsr().astype(np.float32)
                Y = sp.load_npz(req["Y"]).tocsr().astype(np.float32)
                model = XLinearModel.train(X, Y)
                reply = {"ok": True, "seconds": time.perf_counter() - start}
            elif req["cmd"] == "predict":
                if model is None:
                    raise RuntimeError("train first")
                X = sp.load_npz(req["X"]).tocsr().astype(np.float32)
                k = int(req.get("k", 10))
                scores = model.predict(X, beam_size=max(10, k), only_topk=k)
                sp.save_npz(req["out"], sp.csr_matrix(scores))
                reply = {"ok": True, "seconds": time.perf_counter() - start}
            elif req["cmd"] == "stats":
                import pecos

                reply = {
                    "ok": True,
                    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "versions": {
                        "libpecos": getattr(pecos, "__version__", "1.2.8"),
                        "numpy": np.__version__,
                        "scipy": scipy.__version__,
                    },
                }
            else:
                raise ValueError(f"unknown command {req['cmd']!r}")
        except Exception as exc:  # report every failure to the driver instead of dying silently
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
