"""Turns ``benchmarks/results/*.json`` into plots and the tables in ``benchmarks/README.md``.

``python -m benchmarks.report`` re-draws from the saved results without running anything.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from benchmarks.tasks import TASKS

START, END = "<!-- results:start -->", "<!-- results:end -->"
SCALE_START, SCALE_END = "<!-- scale:start -->", "<!-- scale:end -->"


def _ratio(value: float | None, best: float | None, invert: bool = False) -> float | None:
    if value is None or best is None or value == 0 or best == 0:
        return None
    return best / value if invert else value / best


def table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and one line per system: quality, speed (main task) and ratios to the best/fastest system."""
    name, rows, has_train = result["task"], result["systems"], bool(result["n_train"])
    ran = [r for r in rows if not r.get("skipped")]
    with_speed = any(r["speed"].get("products_per_s") for r in ran)
    headline = "challenge" if name == "mwpd" else "recall@5"
    best_q = max((r["quality"][headline] or 0 for r in ran), default=None)
    fastest = max((r["speed"].get("products_per_s") or 0 for r in ran), default=None)
    quickest = min((r["speed"].get("p50_ms") or math.inf for r in ran), default=None)
    header = ["system", "R@1", "R@5", "R@10", "macroR@5"]
    header += ["tail mR@5"] if has_train else []
    header += ["MWPD F1"] if name.startswith("mwpd") else []
    header += [f"{'F1' if headline == 'challenge' else 'R@5'}/best"]
    if with_speed:
        header += ["prod/s", "p50 ms", "p99 ms", "build s", "peak MB", "prod/s/fastest", "p50 x fastest"]
    lines = []
    for r in rows:
        if r.get("skipped"):
            lines.append([r["system"], f"skipped: {r['skipped']}"] + [""] * (len(header) - 2))
            continue
        q, s = r["quality"], r["speed"]
        cells: list[Any] = [r["system"], q["recall@1"], q["recall@5"], q["recall@10"], q["macro_recall@5"]]
        cells += [q["tail_macro_recall@5"]] if has_train else []
        cells += [q["challenge"]] if name.startswith("mwpd") else []
        cells += [_ratio(q[headline], best_q)]
        if with_speed:
            cells += [
                s.get("products_per_s"),
                s.get("p50_ms"),
                s.get("p99_ms"),
                s.get("build_s"),
                s.get("peak_mb"),
                _ratio(s.get("products_per_s"), fastest),
                (s["p50_ms"] / quickest) if s.get("p50_ms") and quickest not in (None, math.inf) else None,
            ]
        lines.append(["" if c is None else (round(c, 4) if isinstance(c, float) else c) for c in cells])
    return header, lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Recall@k curves per system, and p50 latency against recall@5 when speed was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [r for r in result["systems"] if not r.get("skipped")]
    timed = [r for r in ran if r["speed"].get("p50_ms")]
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(12 if timed else 6.5, 4.5), squeeze=False)
    ax = axes[0][0]
    for r in ran:
        curve = r["quality"]["curve"]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=r["system"])
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"{result['task']}: recall@k ({result['n_test']} products)")
    ax.legend(fontsize=8, loc="lower right")
    if timed:
        ax = axes[0][1]
        for r in timed:
            ax.scatter(r["speed"]["p50_ms"], r["quality"]["recall@5"], s=40)
            ax.annotate(
                r["system"],
                (r["speed"]["p50_ms"], r["quality"]["recall@5"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency per single product (ms, log scale)")
        ax.set_ylabel("recall@5")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title("latency vs recall@5")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(result: dict[str, Any], image: str | None) -> str:
    m, g = result["machine"], result["git"]
    dirty = " (uncommitted changes)" if g.get("dirty") else ""
    parts = [
        f"### `{result['task']}`: {result['title']}",
        "",
        f"{result['n_train']} training products, {result['n_test']} test products, {result['n_tags']} tags. "
        f"Run {result['created']} at commit `{(g.get('commit') or '?')[:10]}`{dirty} "
        f"on {m['cores']} cores ({m['cpu']}), GPU: {m['gpu'] or 'none'}, load average at start "
        f"{m['load_average_at_start'][0]:.1f}. Command: `{result['command']}`.",
        "",
        markdown_table(*table(result)),
    ]
    if result["settings"].get("seed_cache") and any(
        r.get("speed", {}).get("build_s") for r in result["systems"]
    ):
        parts += [
            "",
            "Product vectors for the quality run were seeded from a cache of the same model and product text "
            "(`--seed-cache`), so `build s` of `minilm-knn` excludes encoding its training products; the "
            "speed columns are always measured with the cache off (encoding included).",
        ]
    if image:
        parts += ["", f"![{result['task']}](results/{image})"]
    return "\n".join(parts)


def refresh(results_dir: Path, readme: Path) -> None:
    """Re-draws every task's plot and rewrites the README block between the result markers."""
    sections = []
    for name in TASKS:
        path = results_dir / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        image = f"{name}.png"
        plot(result, results_dir / image)
        sections.append(section(result, image))
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    text = _replace_block(text, START, END, "\n\n".join(sections))
    scale = results_dir / "scale.json"
    if scale.exists():
        text = _replace_block(text, SCALE_START, SCALE_END, scale_section(json.loads(scale.read_text())))
    readme.write_text(text)


def _replace_block(text: str, start: str, end: str, body: str) -> str:
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def scale_section(result: dict[str, Any]) -> str:
    from benchmarks.scale import scale_table

    m, settings = result["machine"], result["settings"]
    commit = (result["git"].get("commit") or "?")[:10]
    return "\n".join(
        [
            f"Run {result['created']} at commit `{commit}` on {m['cores']} cores "
            f"({m['cpu']}), load average at start {m['load_average_at_start'][0]:.1f}; "
            f"{settings['queries']} MWPD validation products as queries, k = {settings['k']}. "
            f"Tag texts encoded/s: {result['tag_texts_encoded_per_s']:.0f}; products encoded/s: "
            f"{result['products_encoded_per_s']:.1f}; sweep wall time {result['sweep_wall_s']:.0f} s. "
            f"Command: `{result['command']}`.",
            "",
            markdown_table(*scale_table(result)),
            "",
            "![scale](results/scale.png)",
        ]
    )


if __name__ == "__main__":
    root = Path(__file__).resolve().parent
    refresh(root / "results", root / "README.md")
    sys.exit(0)
