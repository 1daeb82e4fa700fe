"""Online learning: merchandiser judgements change an index's answers at once, and can be undone.

A judgement is one action on one (product, tag) pair: ``accept`` or ``add`` (the tag is right) or
``reject`` (it is wrong). The index keeps the ordered log of judgements with the judged products'
text and vectors (:class:`LearnedState`), and everything it does with them is a pure function of
that log, so deleting a judgement restores exactly the answers given before it was made:

- **Accepted / added tags** make the product an exemplar of those tags (no re-training): a product
  that is not already a labelled exemplar of the index joins the exemplar set after the base
  exemplars, in the order of its first judgement; for a base exemplar with the same id, the
  judgement edits that row's labels in place (accepted tags added, rejected tags removed).
- **Rejected tags** are hard negatives: the tag is suppressed for the judged product and for any
  product whose vector lies within ``radius`` (cosine) of it, i.e. near-identical offers. They are
  also exported for the next fine-tune (:meth:`LearnedState.products`).
- With ``refit_gate`` the zero-shot gate (:mod:`tagindex.gate`) is refitted on the effective
  exemplar set after every change once it holds ``GATE_MIN_EXEMPLARS``; the fitted values belong to
  the state, so an undo restores them.

For each (product, tag) pair the latest judgement wins (as in the service's feedback export).
The state is saved inside the index directory (``learned.parquet``, ``learned_vectors.safetensors``,
``learned.json``) by :func:`save_learned`, which writes a new version of the index directory
(:func:`tagindex.store.versioned_directory`) and bumps the manifest's ``index_version``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from tagindex.compressed_exemplars import CodedExemplars, LabelSums
from tagindex.config import ExemplarParams
from tagindex.errors import InputError
from tagindex.exemplars import ExemplarSet
from tagindex.schema import Product
from tagindex.store import IndexFormatError, link_or_copy, read_manifest, versioned_directory, write_manifest

if TYPE_CHECKING:
    from tagindex.index import TagIndex

logger = logging.getLogger(__name__)

Action = Literal["accept", "add", "reject"]
ACTIONS: tuple[str, ...] = ("accept", "add", "reject")
LEARNED_TABLE = "learned.parquet"
LEARNED_VECTORS = "learned_vectors.safetensors"
LEARNED_META = "learned.json"
LEARNED_FILES = (LEARNED_TABLE, LEARNED_VECTORS, LEARNED_META)
DEFAULT_RADIUS = 0.95
# The gate's simulated zero-shot split needs many exemplars: refitted on 100-200 judged MWPD
# products it chose offsets that cost 5-24 points of lvl3 R@1 on a dev split of MWPD train
# (benchmarks/learning_curve.py --eval dev), so below this count the index's own values stay.
GATE_MIN_EXEMPLARS = 1000


@dataclass(frozen=True)
class Judgement:
    """One action on one (product, tag) pair.

    ``source`` names who numbers the ids (``learn``: this module, ``feedback``: the service's feedback
    table, whose row ids they are); (source, id) is unique, and within a source ids order judgements.
    """

    id: int
    product_id: str
    tag: str
    action: str
    source: str = "learn"

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise InputError(f"judgement {self.id}: action must be one of {ACTIONS}, not '{self.action}'")


@dataclass
class Verdict:
    """The effective judgement of one product: latest action per tag wins."""

    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


@dataclass
class LearnedState:
    """The judgement log of an index, the judged products and their vectors.

    Attributes:
        judgements: Judgements in ``id`` order (ids unique).
        products: Judged products by id (text only; their ``tags`` are not used).
        vectors: Each judged product's vector (dim,) from the index's encoder.
        radius: Cosine similarity at or above which a rejection also applies to another product.
        refit_gate: Refit the zero-shot gate on the effective exemplars after each change.
        gate_params: The gate values fitted for the current log (None: the index's own params).
        gate_report: How they were fitted.
        version: Bumped by every change; saved as the manifest's ``index_version``.
        applied_through: Per source, the highest judgement id ever applied (ids are never reused),
            so a caller that replays an external log (the service's feedback table) knows where to
            resume.
    """

    judgements: list[Judgement] = field(default_factory=list)
    products: dict[str, Product] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    radius: float = DEFAULT_RADIUS
    refit_gate: bool = True
    gate_params: ExemplarParams | None = None
    gate_report: dict[str, Any] | None = None
    version: int = 0
    applied_through: dict[str, int] = field(default_factory=dict)
    _cache: tuple[list[str], dict[str, Verdict]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.judgements)

    def scoring_params(self, params: ExemplarParams) -> ExemplarParams:
        """``params`` with the gate values fitted for this log, when there are any."""
        if self.gate_params is None:
            return params
        return replace(
            params,
            unseen_offset=self.gate_params.unseen_offset,
            parent_vote_weight=self.gate_params.parent_vote_weight,
        )

    def next_id(self, source: str = "learn") -> int:
        """The lowest id above every id of ``source`` ever applied."""
        used = max((j.id for j in self.judgements if j.source == source), default=0)
        return max(self.applied_through.get(source, 0), used) + 1

    def verdicts(self) -> tuple[list[str], dict[str, Verdict]]:
        """Judged product ids in order of their first judgement, and each one's effective verdict."""
        if self._cache is None:
            latest: dict[str, dict[str, str]] = {}
            for j in self.judgements:
                latest.setdefault(j.product_id, {})[j.tag] = j.action
            verdicts = {
                pid: Verdict(
                    [t for t, a in actions.items() if a in ("accept", "add")],
                    [t for t, a in actions.items() if a == "reject"],
                )
                for pid, actions in latest.items()
            }
            self._cache = list(latest), verdicts
        return self._cache

    def invalidate(self) -> None:
        self._cache = None

    def export_products(self) -> list[dict[str, Any]]:
        """Judged products as a products file for training: ``tags`` accepted, ``rejected`` kept."""
        order, verdicts = self.verdicts()
        rows = []
        for pid in order:
            p = self.products[pid]
            rows.append(
                {
                    "id": pid,
                    "title": p.title,
                    "description": p.description,
                    "attributes": p.attributes,
                    "tags": list(verdicts[pid].accepted),
                    "rejected": list(verdicts[pid].rejected),
                }
            )
        return rows

    # ---- what the index uses ------------------------------------------------------------------
    def effective_exemplars(
        self, base: ExemplarSet | CodedExemplars | None, dim: int
    ) -> ExemplarSet | CodedExemplars | None:
        """The base exemplars edited by the judgements, plus newly judged products (see module doc)."""
        order, verdicts = self.verdicts()
        if not order:
            return base
        if isinstance(base, CodedExemplars):
            return self._effective_coded(base, order, verdicts)
        ids: list[str] = []
        labels: list[list[str]] = []
        rows: list[np.ndarray] = []
        in_base: set[str] = set()
        if base is not None:
            for pid, labs, vec in zip(base.ids, base.labels, base.vectors, strict=True):
                v = verdicts.get(pid)
                if v is not None:
                    in_base.add(pid)
                    labs = [t for t in labs if t not in v.rejected] + [t for t in v.accepted if t not in labs]
                if labs:
                    ids.append(pid)
                    labels.append(list(labs))
                    rows.append(vec)
        for pid in order:
            v = verdicts[pid]
            if pid in in_base or not v.accepted:
                continue
            ids.append(pid)
            labels.append(list(v.accepted))
            rows.append(self.vectors[pid])
        if not ids:
            return None
        return ExemplarSet(ids, labels, np.stack(rows).astype(np.float32, copy=False))

    def _effective_coded(
        self, base: CodedExemplars, order: list[str], verdicts: dict[str, Verdict]
    ) -> CodedExemplars:
        """:meth:`effective_exemplars` over exemplar codes: the same rows and labels, other storage.

        Base rows stay in the codes (a row whose every label was rejected stays, labelless, and the
        scorer keeps it out of the neighbours); newly judged products follow as float32 rows. The
        base vectors are not kept, so a judged base row moves between label sums with the judged
        product's vector (the index's encoding of the text sent with the judgement: the same
        vector when that text is the exemplar's).
        """
        labels: list[list[str]] = []
        moved_from: list[list[str]] = []
        moved_to: list[list[str]] = []
        moved_vectors: list[np.ndarray] = []
        in_base: set[str] = set()
        for pid, labs in zip(base.ids, base.labels, strict=True):
            v = verdicts.get(pid)
            if v is not None:
                in_base.add(pid)
                edited = [t for t in labs if t not in v.rejected] + [t for t in v.accepted if t not in labs]
                if edited != labs:
                    moved_from.append(list(labs))
                    moved_to.append(edited)
                    moved_vectors.append(self.vectors[pid])
                labs = edited
            labels.append(list(labs))
        ids = list(base.ids)
        new_labels: list[list[str]] = []
        new_vectors: list[np.ndarray] = []
        for pid in order:
            v = verdicts[pid]
            if pid in in_base or not v.accepted:
                continue
            ids.append(pid)
            new_labels.append(list(v.accepted))
            new_vectors.append(self.vectors[pid])
        sums = base.label_sums
        dim = base.codes.dim
        if moved_vectors:
            moved = np.stack(moved_vectors).astype(np.float32, copy=False)
            sums = sums.merge(LabelSums.of(moved_from, moved, sign=-1)).merge(LabelSums.of(moved_to, moved))
        extra = np.zeros((0, dim), np.float32)
        if new_vectors:
            extra = np.stack(new_vectors).astype(np.float32, copy=False)
            sums = sums.merge(LabelSums.of(new_labels, extra))
        return CodedExemplars(ids, labels + new_labels, base.codes, sums, extra)

    def negatives(self) -> tuple[np.ndarray, list[str]]:
        """Hard negatives: vectors (r, dim) and the rejected tag of each row."""
        order, verdicts = self.verdicts()
        vecs, tags = [], []
        for pid in order:
            for t in verdicts[pid].rejected:
                vecs.append(self.vectors[pid])
                tags.append(t)
        if not vecs:
            return np.zeros((0, 0), dtype=np.float32), []
        return np.stack(vecs).astype(np.float32, copy=False), tags

    def suppressed(self, queries: np.ndarray) -> list[set[str]]:
        """Per query vector (n, dim), the rejected tags within ``radius`` of it."""
        vecs, tags = self.negatives()
        out: list[set[str]] = [set() for _ in range(len(queries))]
        if not tags:
            return out
        sims = np.asarray(queries, dtype=np.float32) @ vecs.T  # (n, r)
        for i, j in zip(*np.nonzero(sims >= self.radius - 1e-6), strict=True):
            out[int(i)].add(tags[int(j)])
        return out


# ---- changing the state ------------------------------------------------------------------------
def _check_tags(index: TagIndex, judgements: Sequence[Judgement]) -> None:
    unknown = sorted({j.tag for j in judgements if j.tag not in index})
    if unknown:
        raise InputError(f"judgement(s) name tag id(s) not in the index: {unknown[:5]}")


def _refresh(index: TagIndex, state: LearnedState) -> None:
    """Recomputes what depends on the log (gate, scorer caches) and bumps the version."""
    state.invalidate()
    state.version += 1
    state.gate_params, state.gate_report = None, None
    if state.judgements and state.refit_gate and index.params.exemplars.fit_gate:
        from tagindex.gate import fit_gate

        effective = state.effective_exemplars(index.base_exemplars, index.vector_dim)
        # The gate simulates unseen tags on float32 exemplar vectors; exemplar codes keep the
        # values fitted when the index was built.
        if isinstance(effective, ExemplarSet) and len(effective) >= GATE_MIN_EXEMPLARS:
            fitted, report = fit_gate(index.tags, index.tag_vectors_matrix, effective, index.params.exemplars)
            if report.get("fitted"):
                state.gate_params, state.gate_report = fitted, report
    index.learned_changed()


def state_of(index: TagIndex) -> LearnedState:
    """The index's learned state, created empty on first use."""
    if index.learned is None:
        index.learned = LearnedState()
    return index.learned


def learn(
    index: TagIndex,
    products: Sequence[Product],
    judgements: Iterable[tuple[str, str, str]] | None = None,
    rejected: Mapping[str, Sequence[str]] | None = None,
    vectors: np.ndarray | None = None,
    ids: Sequence[int] | None = None,
    source: str = "learn",
) -> list[Judgement]:
    """Applies judgements to ``index`` in memory (no re-training); returns the judgements recorded.

    Args:
        index: The index to teach.
        products: The judged products (text is stored; encoded unless ``vectors`` is given). Without
            ``judgements``, each product's ``tags`` are accepted tags.
        judgements: Explicit (product id, tag, action) triples; products must include each product id.
        rejected: Product id -> rejected tags (used with the products' ``tags``).
        vectors: Product vectors (n, dim) aligned with ``products``.
        ids: Judgement ids to use (e.g. feedback row ids); default: the next ids never used.
        source: Who numbers the ids (see :class:`Judgement`).

    Raises:
        InputError: A tag is not in the index, a judgement names an unknown product, or an id is
            already in the log.
    """
    state = state_of(index)
    products = list(products)
    by_pid = {p.id: p for p in products}
    triples: list[tuple[str, str, str]]
    if judgements is None:
        triples = []
        for p in products:
            triples += [(p.id, t, "accept") for t in p.tags]
            triples += [(p.id, t, "reject") for t in (rejected or {}).get(p.id, [])]
    else:
        triples = list(judgements)
    missing = sorted({pid for pid, _, _ in triples if pid not in by_pid and pid not in state.products})
    if missing:
        raise InputError(f"judgement(s) for product(s) without text: {missing[:5]}")
    start = state.next_id(source)
    id_list = list(ids) if ids is not None else list(range(start, start + len(triples)))
    if len(id_list) != len(triples):
        raise InputError(f"{len(id_list)} judgement ids for {len(triples)} judgements")
    present = {j.id for j in state.judgements if j.source == source}
    if id_list and (min(id_list) < 1 or len(set(id_list)) < len(id_list) or present & set(id_list)):
        raise InputError("judgement ids must be positive, unique and not already in the log")
    new = [Judgement(i, pid, t, a, source) for i, (pid, t, a) in zip(id_list, triples, strict=True)]
    _check_tags(index, new)
    if not new:
        return []
    fresh = [p for p in products if p.id in {j.product_id for j in new}]
    if vectors is None:
        need = [p for p in fresh if p.id not in state.vectors or state.products[p.id] != _text_only(p)]
        enc = index.encode_products(need) if need else np.zeros((0, index.vector_dim), np.float32)
        vec_of = dict(zip([p.id for p in need], enc, strict=True))
    else:
        if len(vectors) != len(products):
            raise InputError(f"{len(vectors)} vectors for {len(products)} products")
        vec_of = {p.id: np.asarray(v, dtype=np.float32) for p, v in zip(products, vectors, strict=True)}
    for p in fresh:
        if p.id in vec_of:
            state.vectors[p.id] = vec_of[p.id]
            state.products[p.id] = _text_only(p)
    state.judgements.extend(new)
    state.judgements.sort(key=lambda j: (j.source, j.id))
    state.applied_through[source] = max(state.applied_through.get(source, 0), max(j.id for j in new))
    _refresh(index, state)
    logger.info("learned %d judgement(s); index version %d", len(new), state.version)
    return new


def undo(index: TagIndex, judgement_ids: Iterable[int], source: str = "learn") -> list[Judgement]:
    """Deletes judgements of ``source``; the index answers as if they had never been made.

    Returns:
        The judgements removed (ids not in the log are ignored).
    """
    state = state_of(index)
    doomed = set(judgement_ids)
    removed = [j for j in state.judgements if j.id in doomed and j.source == source]
    if not removed:
        return []
    state.judgements = [j for j in state.judgements if not (j.id in doomed and j.source == source)]
    still = {j.product_id for j in state.judgements}
    for pid in {j.product_id for j in removed} - still:
        state.products.pop(pid, None)
        state.vectors.pop(pid, None)
    _refresh(index, state)
    logger.info("undid %d judgement(s); index version %d", len(removed), state.version)
    return removed


def _text_only(p: Product) -> Product:
    return replace(p, tags=[])


# ---- persistence -------------------------------------------------------------------------------
def write_learned(directory: Path, state: LearnedState) -> None:
    """Writes the state's three files into ``directory`` (the index's temporary save directory)."""
    pd.DataFrame(
        {
            "id": [j.id for j in state.judgements],
            "product_id": [j.product_id for j in state.judgements],
            "tag": [j.tag for j in state.judgements],
            "action": [j.action for j in state.judgements],
            "source": [j.source for j in state.judgements],
        }
    ).to_parquet(directory / LEARNED_TABLE, index=False)
    pids = sorted(state.products)
    dim = next(iter(state.vectors.values())).shape[0] if state.vectors else 0
    matrix = np.stack([state.vectors[p] for p in pids]) if pids else np.zeros((0, dim), np.float32)
    save_file({"vectors": np.ascontiguousarray(matrix, dtype=np.float32)}, str(directory / LEARNED_VECTORS))
    meta = {
        "radius": state.radius,
        "refit_gate": state.refit_gate,
        "gate_params": state.gate_params.to_dict() if state.gate_params else None,
        "gate_report": state.gate_report,
        "version": state.version,
        "applied_through": state.applied_through,
        "products": [
            {
                "id": p,
                "title": state.products[p].title,
                "description": state.products[p].description,
                "attributes": state.products[p].attributes,
            }
            for p in pids
        ],
    }
    (directory / LEARNED_META).write_text(json.dumps(meta, ensure_ascii=False, sort_keys=True) + "\n")


def read_learned(directory: Path, dim: int) -> LearnedState | None:
    """Reads what :func:`write_learned` wrote; None when the index has never learned."""
    if not (directory / LEARNED_META).exists():
        return None
    try:
        meta = json.loads((directory / LEARNED_META).read_text())
        table = pd.read_parquet(directory / LEARNED_TABLE)
        matrix = load_file(str(directory / LEARNED_VECTORS))["vectors"]
    except (OSError, ValueError, KeyError) as exc:
        raise IndexFormatError(f"{directory}: unreadable learned state: {exc}") from None
    rows = meta["products"]
    if len(rows) != len(matrix) or (len(matrix) and matrix.shape[1] != dim):
        raise IndexFormatError(
            f"{directory}: learned products and vectors disagree ({len(rows)} vs {matrix.shape})"
        )
    products = {
        r["id"]: Product(r["id"], r["title"], r.get("description") or "", r.get("attributes") or {})
        for r in rows
    }
    return LearnedState(
        judgements=[
            Judgement(int(i), str(p), str(t), str(a), str(src))
            for i, p, t, a, src in zip(
                table["id"], table["product_id"], table["tag"], table["action"], table["source"], strict=True
            )
        ],
        products=products,
        vectors={r["id"]: matrix[i] for i, r in enumerate(rows)},
        radius=float(meta["radius"]),
        refit_gate=bool(meta["refit_gate"]),
        gate_params=ExemplarParams.from_dict(meta["gate_params"]) if meta.get("gate_params") else None,
        gate_report=meta.get("gate_report"),
        version=int(meta["version"]),
        applied_through={str(k): int(v) for k, v in (meta.get("applied_through") or {}).items()},
    )


def save_learned(index: TagIndex, directory: str | os.PathLike[str]) -> None:
    """Saves only the learned state of ``index`` into its saved ``directory``, atomically.

    Every other file is carried over by :func:`rewrite_index` (hard links), so a save costs the
    learned files, not the whole index; the manifest gets the new ``index_version``.

    Raises:
        IndexFormatError: ``directory`` is not a saved index.
    """
    state = state_of(index)
    rewrite_index(
        directory, lambda tmp: write_learned(tmp, state), learned_manifest(state), replace=LEARNED_FILES
    )


def rewrite_index(
    directory: str | os.PathLike[str],
    write: Callable[[Path], Any],
    manifest_update: dict[str, Any],
    replace: Sequence[str] = (),
) -> None:
    """Saves a new version of a saved index with some files (re)written and the rest unchanged.

    Unchanged files of the live version are hard-linked (copied where links fail) into the new
    version and keep their recorded checksums; files named in ``replace`` are left out for
    ``write(new_version_dir)`` to write. The switch is :func:`tagindex.store.versioned_directory`'s:
    a kill at any point leaves the old or the new version live.
    """
    manifest = read_manifest(directory, "tagindex", verify=False)
    root = manifest.root
    keep = [rel for rel in manifest.get("files", {}) if rel not in replace]
    with versioned_directory(directory) as tmp:
        for rel in keep:
            src, dst = root / rel, tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(src, dst)
        write(tmp)
        write_manifest(tmp, {k: v for k, v in {**manifest, **manifest_update}.items() if k != "files"})


def learned_manifest(state: LearnedState | None) -> dict[str, Any]:
    """Manifest fields describing the learned state (``index_version`` and a summary)."""
    if state is None:
        return {"index_version": 0, "learned": None}
    order, verdicts = state.verdicts()
    return {
        "index_version": state.version,
        "learned": {
            "judgements": len(state.judgements),
            "products": len(order),
            "exemplars": sum(1 for p in order if verdicts[p].accepted),
            "rejections": sum(len(verdicts[p].rejected) for p in order),
            "applied_through": state.applied_through,
            "radius": state.radius,
            "refit_gate": state.refit_gate,
        },
    }
