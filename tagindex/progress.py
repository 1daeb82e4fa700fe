"""Progress bars counted in items (products, tags, texts), never in batches, with a rate and an ETA.

Library code only draws a bar when its caller asks (``show_progress``); the CLI asks unless ``-q``.
Bars go to stderr so stdout stays clean for JSON output; into a file or a pipe they redraw at most
every 30 s.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(total: int, enabled: bool, desc: str = "encoding", unit: str = "text") -> tqdm:
    """A bar over ``total`` items; call ``update(n)`` after each batch of ``n`` items.

    Args:
        total: Items to process.
        enabled: Draw the bar (False gives a silent bar whose ``update`` does nothing).
        desc: Label before the bar.
        unit: What one item is, shown in the count and the rate.

    Returns:
        A tqdm bar; use it as a context manager so it is closed on errors too.
    """
    # Into a log file or a pipe (cron, CI), redraw at most every 30 s: a bar redrawn ten times a second
    # there fills the log with thousands of carriage-return lines.
    interval = 0.1 if sys.stderr.isatty() else 30.0
    return tqdm(
        total=total,
        disable=not enabled,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=interval,
    )
