"""Service settings, read from ``TAGINDEX_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service reads at start-up.

    Example:
        ``TAGINDEX_INDEX_DIR=work/shopify-index TAGINDEX_API_KEY=s3cret uvicorn ...`` or
        ``Settings(index_dir="work/shopify-index", api_key="s3cret")``.
    """

    model_config = SettingsConfigDict(env_prefix="TAGINDEX_", env_file=".env", extra="ignore")

    index_dir: Path = Field(description="index directory from `tagindex index`; added tags are saved here")
    api_key: SecretStr | None = Field(
        default=None,
        description="key that write endpoints require in the X-API-Key header; when unset a random key is "
        "generated at start-up and logged once",
    )
    feedback_db: Path | None = Field(
        default=None,
        description="SQLite file for feedback; default: '<index_dir>.feedback.sqlite3' beside the index "
        "(never inside it, since saving the index replaces that directory)",
    )
    feedback_url: str | None = Field(
        default=None,
        description="feedback store URL shared by replicas, e.g. postgresql://user@host/db (needs "
        "tagindex[postgres]); when set it replaces feedback_db",
    )
    index_poll_seconds: float = Field(
        default=2.0,
        ge=0,
        description="how often the index manifest is checked, so tags added or retired by another "
        "replica sharing index_dir are served here too; 0: never",
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1_000, description="larger request bodies get 413")
    max_batch: int = Field(default=64, ge=1, description="most products in one /v1/tag request")
    max_top_k: int = Field(default=100, ge=1, description="largest top_k any endpoint accepts")
    max_text_chars: int = Field(default=20_000, ge=100, description="longest title/description/query")
    max_new_tags: int = Field(default=1_000, ge=1, description="most tags one POST /v1/tags may add")
    max_upload_products: int = Field(
        default=2_000, ge=1, description="most products one POST /v1/products/upload may hold"
    )
    accept_threshold: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="default similarity at or above which `decide` marks a tag 'accept' (else 'review'); "
        "unset: requests must pass one",
    )
    explainer: str = Field(
        default="auto",
        description="registered explainer used for `explain`; 'auto': 'tagindex' (score parts, reranker, "
        "calibration, nearest labelled products, important words) when a reranker or calibration is "
        "configured, else 'similarity'",
    )
    decider: str = Field(
        default="auto",
        description="registered decider used for `decide`; 'auto': 'calibrated' when a calibration is "
        "configured, else 'threshold'",
    )
    reranker_dir: Path | None = Field(
        default=None, description="cross-encoder directory from `tagindex train-reranker` (rerank stage)"
    )
    rerank_depth: int | None = Field(
        default=None,
        ge=1,
        description="candidates the reranker rescores by default; unset: the reranker's own",
    )
    max_rerank_depth: int = Field(default=100, ge=1, description="largest rerank_depth a request may ask for")
    calibration_file: Path | None = Field(
        default=None,
        description="calibration JSON from `tagindex calibrate`: calibrated probabilities and the `assigned` "
        "tags (it must have been fitted for the configured reranker)",
    )
    hierarchy: Literal["close", "prune", "none"] = Field(
        default="close",
        description="calibrated decisions: add ancestors of assigned tags (close), drop tags whose parent "
        "is not assigned (prune) or neither (none)",
    )
    labelled_products: Path | None = Field(
        default=None,
        description="products file giving titles to the index's exemplars (nearest labelled products in "
        "explanations); without it they are shown by id",
    )
    explain_words: int = Field(default=5, ge=0, le=50, description="important words per explained tag")
    compute_threads: int | None = Field(
        default=1,
        ge=1,
        description="threads each numeric library may use (torch intra-op, FAISS OpenMP, BLAS); None "
        "keeps their defaults (one per core). Measured on a busy 2-core machine, one thread served a "
        "request several times faster: idle worker threads spin on the cores other work needs, and "
        "the encoder batcher already merges concurrent requests",
    )
    duplicate_neighbours: int = Field(default=5, ge=1, le=50, description="neighbours scanned per tag")
    learn: bool = Field(
        default=True,
        description="learn feedback at once: accepted/added tags make the product an exemplar, rejected "
        "tags are suppressed for it and near-identical products (tagindex.learn); saved with the index",
    )
    review_pool: Path | None = Field(
        default=None, description="products file the review queue (/v1/review/next) chooses from"
    )

    def feedback_path(self) -> Path:
        """Where feedback is stored."""
        if self.feedback_db is not None:
            return self.feedback_db
        index_dir = self.index_dir.resolve()
        return index_dir.parent / f"{index_dir.name}.feedback.sqlite3"
