"""Packaging and layering: what a regular install ships, and which way imports point."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"mletui.engine": "engine", "mletui.tui": "tui", "mletui.assets": "assets"}


def _folders_with_python(top: str) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(ROOT / top):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        if any(f.endswith(".py") for f in filenames):
            rel = Path(dirpath).relative_to(ROOT / top)
            found.add(".".join(rel.parts))
    return found


def test_pyproject_lists_every_package_folder():
    """A regular (non-editable) install ships only the listed packages: a new subfolder
    missing from the list would silently vanish from users' installs."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    expected = set()
    for pkg, folder in MAPPING.items():
        for sub in _folders_with_python(folder):
            expected.add(pkg + ("." + sub if sub else ""))
    assert listed == expected
    assert cfg["tool"]["setuptools"]["package-dir"] == MAPPING


def test_engine_imports_without_textual_rich_or_plotext():
    """The engine must run headless on a machine without the UI packages."""
    code = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('textual', 'rich', 'plotext', 'textual_plotext'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import mletui.engine.runner, mletui.engine.record, mletui.engine.presets
from mletui.engine.topics import all_topics
topics = all_topics()
assert topics, 'no topics registered'
for t in topics.values():
    assert t.params and t.views, t.name
print('ok', sorted(topics))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


def test_engine_sources_never_import_ui_packages():
    bad = []
    for path in (ROOT / "engine").rglob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")):
                mod = s.split()[1].split(".")[0]
                if mod in ("textual", "rich", "plotext", "textual_plotext"):
                    bad.append(f"{path.relative_to(ROOT)}: {s}")
    assert not bad, bad
