"""Constants and helpers shared by the service tests (a uniquely named module, unlike conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}


def make_settings(index_dir: Path, **overrides: Any) -> Any:
    """Service settings for a test index, with the test API key."""
    from tagindex.service.settings import Settings

    return Settings(index_dir=index_dir, api_key=API_KEY, **overrides)
