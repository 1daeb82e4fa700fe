"""A short, seeded schemathesis run against the real service over HTTP: no answer may be a 5xx.

Every operation of the OpenAPI document gets a few hundred generated requests (valid and invalid,
with the API key so the write endpoints are reached too) on a tiny index. The server counts what it
answered by status (its Prometheus metrics), so the test checks the server's own record rather than
the fuzzer's summary. The long campaign (>= 20,000 requests) is ``benchmarks/service_hostile.py fuzz``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import API_KEY, make_settings, serve_in_thread

pytestmark = pytest.mark.slow

SEED = 20261129
EXAMPLES = 150  # at most, per operation and phase; ~1,900 requests over the 14 operations in all

TINY_VOCABULARY = [
    ("apparel", "Apparel", None),
    ("apparel/shirts", "Shirts", "apparel"),
    ("apparel/shoes", "Shoes", "apparel"),
    ("apparel/shoes/boots", "Boots", "apparel/shoes"),
    ("jewellery", "Jewellery", None),
    ("jewellery/lockets", "Lockets", "jewellery"),
    ("home", "Home & Garden", None),
    ("home/candles", "Candles", "home"),
    ("waterproof", "waterproof", None),
    ("lightweight", "lightweight", None),
]


@pytest.fixture
def tiny_service(tmp_path: Path, svc_encoder) -> Iterator[tuple[str, object]]:
    from tagindex.service.app import create_app

    from tagindex.index import TagIndex
    from tagindex.schema import Tag

    index_dir = tmp_path / "tiny-index"
    tags = [
        Tag(i, n, parent=p, kind="keyword" if p is None and n.islower() else "category")
        for i, n, p in TINY_VOCABULARY
    ]
    TagIndex.build(tags, encoder=svc_encoder).save(index_dir)
    app = create_app(make_settings(index_dir, max_batch=4, max_top_k=20), encoder=svc_encoder)
    for url in serve_in_thread(app):
        yield url, app


def test_seeded_fuzzing_finds_no_server_error(tiny_service, tmp_path):
    if importlib.util.find_spec("schemathesis") is None:
        pytest.skip("schemathesis is not installed (pip install 'tagindex[dev]')")
    url, app = tiny_service
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing",
        "--checks",
        "not_a_server_error",
        "--header",
        f"X-API-Key: {API_KEY}",
        "--workers",
        "1",
        "--no-shrink",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    # cwd: schemathesis keeps its example database (.hypothesis/) in the working directory
    run = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"}
    )
    by_status = _answers_by_status(app)
    total = sum(by_status.values())
    server_errors = {s: n for s, n in by_status.items() if s >= 500}
    assert total >= 10 * EXAMPLES, (total, run.stdout[-3000:])  # the run really happened
    assert not server_errors, (server_errors, run.stdout[-5000:])
    assert run.returncode == 0, run.stdout[-5000:]


def _answers_by_status(app) -> dict[int, int]:
    """Requests the server answered, by status, from its own Prometheus counter."""
    counts: dict[int, int] = {}
    for metric in app.state.metrics.registry.collect():
        if metric.name != "tagindex_http_requests":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                status = int(sample.labels["status"])
                counts[status] = counts.get(status, 0) + int(sample.value)
    return counts
