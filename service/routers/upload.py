"""Uploading a products file for the page's review queue: parsed by the same readers as the CLI.

The file is the raw request body (``Content-Type`` is not trusted: the name or ``format`` decides),
so no multipart parser is needed; its size is bounded by ``MAX_BODY_BYTES`` (413) and its products by
``MAX_UPLOAD_PRODUCTS`` (422). Nothing is stored: the page keeps the products and tags them through
``/v1/tag`` one by one as they are reviewed.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field
from tagindex.service.routers.deps import ERRORS, SettingsDep

from tagindex.errors import InputError
from tagindex.io import ProductsReport, read_products_report

router = APIRouter(tags=["products"])

MAX_REPORTED_ERRORS = 50
Column = Annotated[str | None, Query(min_length=1, max_length=200, description="the file's column")]


class UploadedProduct(BaseModel):
    id: str
    title: str
    description: str = ""


class RowError(BaseModel):
    where: str = Field(description="file name and line")
    reason: str


class UploadResponse(BaseModel):
    filename: str
    count: int = Field(description="products read")
    products: list[UploadedProduct]
    skipped: int = Field(description="rows left out (malformed or a repeated id)")
    errors: list[RowError] = Field(description=f"the first {MAX_REPORTED_ERRORS} rows left out, with reasons")
    columns: list[str] = Field(description="the columns the file has")


def _safe_name(filename: str) -> str:
    """The base name, without control characters (it is shown on the page and in messages)."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", Path(filename.replace("\\", "/")).name).strip()
    return name or "upload"


def _parse(data: bytes, name: str, fmt: str, columns: dict[str, str]) -> ProductsReport:
    with tempfile.TemporaryDirectory(prefix="tagindex-upload-") as tmp:
        path = Path(tmp) / f"upload.{fmt}"
        path.write_bytes(data)
        return read_products_report(path, columns=columns, source=name, fmt=fmt)


def _format(name: str, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    suffix = Path(name).suffix.lower()
    known = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
    if suffix not in known:
        raise HTTPException(
            422, f"{name}: unknown file type '{suffix or 'none'}' (expected .csv, .jsonl or .parquet)"
        )
    return known[suffix]


@router.post(
    "/v1/products/upload",
    response_model=UploadResponse,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def upload_products(
    request: Request,
    settings: SettingsDep,
    filename: Annotated[
        str, Query(min_length=1, max_length=255, description="names the format")
    ] = "products.csv",
    format: Annotated[
        Literal["csv", "jsonl", "parquet"] | None, Query(description="instead of the name")
    ] = None,
    id_col: Column = None,
    title_col: Column = None,
    description_col: Column = None,
) -> UploadResponse:
    """Reads a products file (the body): CSV, JSONL or Parquet, with the columns mapped like the
    CLI's ``--id-col/--title-col/--description-col``; HTML in descriptions becomes text. Bad rows
    are left out and listed with their line; a file with no usable row is a 422 with the reason."""
    name = _safe_name(filename)
    fmt = _format(name, format)
    data = await request.body()
    if not data.strip():
        raise HTTPException(422, f"{name}: the file is empty")
    columns = {
        field: column
        for field, column in (("id", id_col), ("title", title_col), ("description", description_col))
        if column
    }
    try:
        report = await anyio.to_thread.run_sync(_parse, data, name, fmt, columns)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    if len(report.products) > settings.max_upload_products:
        raise HTTPException(
            422,
            f"{name} has {len(report.products):,} products; at most {settings.max_upload_products:,} "
            "per upload (TAGINDEX_MAX_UPLOAD_PRODUCTS): split the file",
        )
    return UploadResponse(
        filename=name,
        count=len(report.products),
        products=[
            UploadedProduct(id=p.id, title=p.title, description=p.description) for p in report.products
        ],
        skipped=len(report.errors),
        errors=[RowError(where=w, reason=r) for w, r in report.errors[:MAX_REPORTED_ERRORS]],
        columns=report.columns,
    )
