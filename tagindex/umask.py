"""Modes for files written atomically: what the user's umask gives a plain ``open()`` or ``mkdir``.

``tempfile.mkstemp``/``mkdtemp`` create 0600/0700 entries and safetensors writes 0600 files, so an
output built in a temporary place and renamed would otherwise be private to its owner.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the set-and-restore idiom (briefly process-wide)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike[str], directory: bool = False) -> None:
    """Gives ``path`` mode 0666 (0777 for a directory) less the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def apply_umask_tree(root: str | os.PathLike[str]) -> None:
    """:func:`apply_umask` on ``root`` and everything below it.

    Symbolic links and hard-linked files (a model or an earlier version shared by link) keep their
    mode: changing it would change a file that also lives outside this tree.
    """
    mask = current_umask()
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if not stat.S_ISLNK(info.st_mode) and info.st_nlink == 1:
                os.chmod(path, 0o666 & ~mask)
