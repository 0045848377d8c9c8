"""The topic registry: every module here that defines ``TOPIC`` is a topic.

Adding ``engine/topics/foo.py`` with ``TOPIC = FooTopic()`` makes ``foo`` appear in
the CLI and as a tab in the app, with no other change. A module that fails to import
does not take the others down: it is left out and :func:`failed_topics` says which and
why (``mletui topics`` and the app show it).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from ..params import ParamError
from ..topic import Topic


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, Topic], dict[str, str]]:
    found: list[Topic] = []
    failed: dict[str, str] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:  # a broken topic is reported, the others still load
            failed[info.name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        topic = getattr(module, "TOPIC", None)
        if isinstance(topic, Topic):
            found.append(topic)
    found.sort(key=lambda t: (t.order, t.name))
    return {t.name: t for t in found}, failed


def all_topics() -> dict[str, Topic]:
    """Name -> topic, in tab order, for every module that imported."""
    return _load()[0]


def failed_topics() -> dict[str, str]:
    """Module name -> a one-line reason, for every topic module that failed to import."""
    return _load()[1]


def get_topic(name: str) -> Topic:
    topics = all_topics()
    if name not in topics:
        failed = failed_topics()
        if name in failed:
            raise ParamError(f"topic {name!r} failed to import: {failed[name]}")
        raise ParamError(f"unknown topic {name!r} (known: {', '.join(topics)})")
    return topics[name]
