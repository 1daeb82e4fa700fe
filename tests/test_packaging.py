"""The distribution installs ONE import name, ``tagindex``, in editable and normal installs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUP = PYPROJECT["tool"]["setuptools"]


def _source_packages() -> set[str]:
    """Every folder with an ``__init__.py`` under the mapped source folders, as its import name."""
    names = set()
    for name, folder in SETUP["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            names.add(".".join([name, *rel.parts]))
    return names


def test_every_source_package_is_listed_and_only_tagindex_is_top_level() -> None:
    listed = set(SETUP["packages"])
    assert _source_packages() == listed, "pyproject [tool.setuptools] packages must list every package"
    assert {name.split(".")[0] for name in listed} == {"tagindex"}


def test_editable_install_maps_graph_and_service_under_tagindex() -> None:
    code = (
        "import tagindex.graph, tagindex.service; print(tagindex.graph.__file__, tagindex.service.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    graph_file, service_file = out.stdout.split()
    assert Path(graph_file).parent == REPO / "graph"
    assert Path(service_file).parent == REPO / "service"
    for generic in ("graph", "service"):
        probe = subprocess.run([sys.executable, "-c", f"import {generic}"], capture_output=True, cwd="/")
        assert probe.returncode != 0, f"a top-level '{generic}' package is importable"


@pytest.mark.slow
def test_wheel_installs_only_tagindex_and_runs(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("tagindex-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"tagindex"}
    for needed in ("tagindex/graph/fusion.py", "tagindex/service/app.py", "tagindex/cli/__init__.py"):
        assert needed in names
    assert any(n.startswith("tagindex/service/static/") for n in names)

    # A fresh venv that sees this environment's third-party packages but not its editable tagindex.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    new_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(new_site) / "_deps.pth").write_text(site + "\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True
    )
    code = "import tagindex, tagindex.graph.fusion, tagindex.service.app; print(tagindex.__file__)"
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip().startswith(new_site)
    help_out = subprocess.run(
        [str(env_dir / "bin" / "tagindex"), "--help"], capture_output=True, text=True, cwd="/", check=True
    )
    assert "usage: tagindex" in help_out.stdout
