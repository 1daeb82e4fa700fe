"""One ``APIRouter`` per feature; ``tagindex.service.app.create_app`` includes them all.

A new route goes into the router of its feature (or a new module here plus one line in
:data:`ROUTERS`); shared dependencies live in :mod:`tagindex.service.routers.deps`.
"""

from __future__ import annotations

from fastapi import APIRouter
from tagindex.service.routers import feedback, learning, operations, page, tagging, vocabulary

ROUTERS: tuple[APIRouter, ...] = (
    tagging.router,
    vocabulary.router,
    feedback.router,
    learning.router,
    operations.router,
    page.router,
)

__all__ = ["ROUTERS"]
