"""Named parameter sets: TOML files ``NAME.toml`` of the form

    topic = "ising"
    description = "critical point, a large lattice"
    [params]
    beta = 0.4406868
    L = 256

Built-in presets live in ``assets/presets/``; presets the app saves go to the user's
directory (``$MLETUI_PRESETS`` or ``~/.config/mletui/presets``), which is searched first.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .params import ParamError


_NAME = re.compile(r"[A-Za-z0-9_-]+")  # the rule the app's save dialog states


@dataclass
class Preset:
    name: str
    topic: str
    params: dict[str, Any]
    description: str = ""
    path: str = ""


def user_dir() -> Path:
    env = os.environ.get("MLETUI_PRESETS")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "mletui" / "presets"


def builtin_dir() -> Path:
    try:
        return Path(str(resources.files("mletui.assets"))) / "presets"
    except Exception:  # pragma: no cover - checkout without install
        return Path(__file__).resolve().parent.parent / "assets" / "presets"


def available() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in (builtin_dir(), user_dir()):  # user presets override built-ins of the same name
        if d.is_dir():
            for f in sorted(d.glob("*.toml")):
                found[f.stem] = f
    return found


def load(name: str) -> Preset:
    """A preset by name (or a path to a .toml file). Raises ParamError with one line."""
    path = Path(name).expanduser()
    if not (name.endswith(".toml") and path.is_file()):
        presets = available()
        if name not in presets:
            known = ", ".join(presets) or "none"
            raise ParamError(f"--preset: no preset named {name!r} (available: {known})")
        path = presets[name]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ParamError(f"--preset: cannot read {path}: {exc}".splitlines()[0]) from None
    topic = data.get("topic")
    params = data.get("params", {})
    if not isinstance(topic, str) or not isinstance(params, dict):
        raise ParamError(f"--preset: {path} needs a `topic = \"...\"` line and a [params] table")
    return Preset(name=path.stem, topic=topic, params=dict(params),
                  description=str(data.get("description", "")), path=str(path))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def save(name: str, topic: str, params: Mapping[str, Any], description: str = "") -> Path:
    """Write ``NAME.toml`` in the user's preset directory; returns its path."""
    if not _NAME.fullmatch(name):
        raise ParamError(f"preset name {name!r}: use letters, digits, '-' and '_'")
    d = user_dir()
    d.mkdir(parents=True, exist_ok=True)
    lines = [f"topic = {_toml_value(topic)}"]
    if description:
        lines.append(f"description = {_toml_value(description)}")
    lines.append("")
    lines.append("[params]")
    for k, v in params.items():
        lines.append(f"{k} = {_toml_value(v)}")
    path = d / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
