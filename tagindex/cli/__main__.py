"""``python -m tagindex.cli``: the same as the ``tagindex`` console script."""

import sys

from tagindex.cli import main

sys.exit(main())
