"""One ``APIRouter`` per feature; ``tagindex.service.app.create_app`` includes them all.

A new route goes into the router of its feature (or a new module here plus one line in
:data:`ROUTERS`); shared dependencies live in :mod:`tagindex.service.routers.deps`.
"""

from __future__ import annotations

from fastapi import APIRouter
from tagindex.service.routers import (
    duplicates,
    export,
    feedback,
    learning,
    operations,
    page,
    tagging,
    taxonomy,
    upload,
    vocabulary,
)

ROUTERS: tuple[APIRouter, ...] = (
    tagging.router,
    duplicates.router,  # before vocabulary: its /v1/tags/{id} would take /v1/tags/duplicates/...
    vocabulary.router,
    export.router,  # before feedback: /v1/feedback/export is not a feedback row
    feedback.router,
    upload.router,
    taxonomy.router,
    learning.router,
    operations.router,
    page.router,
)

__all__ = ["ROUTERS"]
