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


def _engine_imports() -> dict[str, set[str]]:
    """Engine module (dotted, under ``engine``) -> the engine modules it imports, anywhere in
    its source (a function-level import closes a loop as well as a top-level one)."""
    import ast

    root = ROOT / "engine"
    modules: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                t = t.removeprefix("mletui.")
                if t in modules and t != name:
                    found.add(t)
        graph[name] = found
    return graph


def test_engine_has_no_import_loop():
    graph = _engine_imports()
    loops: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loops.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package importing its own submodules (a registry) is not a loop through them
    loops = [c for c in loops if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not loops, [" -> ".join(c) for c in loops]


def test_no_topic_module_imports_another():
    """Shared numerics live in a module named for the mechanism (engine/models, engine/gmm.py
    ...), never in a topic that others borrow from."""
    graph = _engine_imports()
    topics = {m for m in graph if m.startswith("engine.topics.")}
    bad = sorted(f"{a} imports {b}" for a in topics for b in graph[a] if b in topics)
    assert not bad, bad


def test_a_wheel_builds_quietly_and_ships_the_styles_and_presets(tmp_path):
    """A regular build (pip wheel, this venv's setuptools, no network) prints no setuptools
    warning (data folders taken for packages "would be ignored") and the wheel holds the
    stylesheet the app loads through CSS_PATH and every built-in preset."""
    import shutil
    import zipfile

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", "exports", ".pytest_cache"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stdout + out.stderr
    assert "warning" not in log.lower() and "would be ignored" not in log, log[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mletui-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mletui/assets/mletui.tcss" in names
    presets = {p.name for p in (ROOT / "assets" / "presets").glob("*.toml")}
    assert presets and {f"mletui/assets/presets/{p}" for p in presets} <= names
    assert not any(n.startswith(("engine/", "tui/")) for n in names), "no top-level engine or tui"
