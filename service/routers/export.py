"""Exporting the merchandisers' decisions (the feedback table) as CSV or JSON lines."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from tagindex.service.engine import Engine
from tagindex.service.feedback import FeedbackRecord, FeedbackStore
from tagindex.service.models import MAX_INT
from tagindex.service.routers.deps import WRITE_ERRORS, EngineDep, require_key

router = APIRouter(tags=["feedback"], dependencies=[Depends(require_key)], responses=WRITE_ERRORS)

COLUMNS = ("id", "created", "product_id", "title", "tag", "tag_name", "tag_path", "action", "score", "user")
MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def decision_rows(records: Iterable[FeedbackRecord], engine: Engine, latest: bool) -> list[dict[str, Any]]:
    """One row per judgement (or per product and tag, the latest judgement, when ``latest``)."""
    rows: dict[Any, dict[str, Any]] = {}
    by_id = engine.by_id
    for r in records:
        tag = by_id.get(r.tag)
        row = {
            "id": r.id,
            "created": r.created,
            "product_id": r.product_id,
            "title": r.title,
            "tag": r.tag,
            "tag_name": tag.name if tag is not None else "",
            "tag_path": " > ".join(engine.path(r.tag)),
            "action": r.action,
            "score": r.score,
            "user": r.user,
        }
        key = (r.product_id, r.tag) if latest else r.id
        rows.pop(key, None)  # a later judgement moves to the end
        rows[key] = row
    return list(rows.values())


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return out.getvalue()


@router.get(
    "/v1/feedback/export",
    response_class=Response,
    responses={200: {"content": {MEDIA["csv"]: {}, MEDIA["jsonl"]: {}}, "description": "the decisions"}},
)
def export_decisions(
    request: Request,
    engine: EngineDep,
    format: Annotated[Literal["csv", "jsonl"], Query(description="csv or jsonl")] = "csv",
    after_id: Annotated[int, Query(ge=0, le=MAX_INT, description="only rows after this id")] = 0,
    latest: Annotated[bool, Query(description="one row per product and tag: its latest judgement")] = False,
) -> Response:
    """The decisions (accept / reject / add) stored through ``/v1/feedback``, oldest first, with each
    tag's name and path, as a CSV file or JSON lines (needs the API key: it holds catalog text)."""
    store: FeedbackStore = request.app.state.feedback
    records = [r for r in store if (r.id or 0) > after_id]
    rows = decision_rows(records, engine, latest)
    if format == "csv":
        body = to_csv(rows)
    else:
        body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return Response(
        body,
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="tagindex-decisions.{format}"'},
    )
