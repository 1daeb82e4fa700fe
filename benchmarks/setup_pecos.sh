#!/usr/bin/env bash
# Creates the separate virtual environment PECOS runs in. libpecos 1.2.8 pins numpy<2 and scipy<1.14,
# which breaks the project's environment (pyarrow), so it never goes there. XR-Linear needs only
# numpy, scipy and scikit-learn; --no-deps skips the torch/transformers stack that XR-Transformer
# (not used here) would pull in, a multi-GB CUDA download.
set -euo pipefail
VENV="${1:-$(dirname "$0")/.venv-pecos}"
PYTHON="${PYTHON:-python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "from pecos.xmc.xlinear.model import XLinearModel" 2>/dev/null; then
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q --no-deps "libpecos==1.2.8"
"$VENV/bin/pip" install -q "numpy<2" "scipy<1.14" "scikit-learn<1.6"
"$VENV/bin/python" -c "from pecos.xmc.xlinear.model import XLinearModel; print('PECOS ready in $VENV')"
