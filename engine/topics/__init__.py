"""The topic registry: every module here that defines ``TOPIC`` is a topic.

Adding ``engine/topics/foo.py`` with ``TOPIC = FooTopic()`` makes ``foo`` appear in
the CLI and as a tab in the app, with no other change.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from ..params import ParamError
from ..topic import Topic


@lru_cache(maxsize=1)
def all_topics() -> dict[str, Topic]:
    found: list[Topic] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        topic = getattr(module, "TOPIC", None)
        if isinstance(topic, Topic):
            found.append(topic)
    found.sort(key=lambda t: (t.order, t.name))
    return {t.name: t for t in found}


def get_topic(name: str) -> Topic:
    topics = all_topics()
    if name not in topics:
        raise ParamError(f"unknown topic {name!r} (known: {', '.join(topics)})")
    return topics[name]
