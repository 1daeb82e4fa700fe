"""HTTP service and merchandiser web page over a saved TagIndex (install ``tagindex[service]``)."""

from __future__ import annotations
