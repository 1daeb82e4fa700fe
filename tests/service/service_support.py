"""Constants and helpers shared by the service tests (a uniquely named module, unlike conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}
# Headless Chromium from Debian's package (browser downloads fail offline): see ../shared/ENVIRONMENT.md.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def make_settings(index_dir: Path, **overrides: Any) -> Any:
    """Service settings for a test index, with the test API key."""
    from tagindex.service.settings import Settings

    return Settings(index_dir=index_dir, api_key=API_KEY, **overrides)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_in_thread(app: Any, log_level: str = "warning") -> Iterator[str]:
    """Runs ``app`` under a real uvicorn server on loopback in a thread; yields its base URL."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
