"""The compute engine (no UI package is imported from here).

Importing the package sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already names a
policy (a user's own value wins). libgomp, torch's OpenMP runtime, reads the variable once, when
torch is first imported, so it must be set before that: this package imports no torch itself,
and every entry point (the ``mletui`` command through ``mletui.tui``, ``python -m
mletui.engine.bench``, the spawned engine processes, which inherit the environment and import
this package to unpickle their target) passes through here first. With the default policy an
OpenMP thread that finishes its share of a parallel region spins (~300,000 iterations) before
it sleeps; on a loaded machine the thread the region waits for is then often descheduled
behind the spinners, and a 4 x 1000 ``max`` took 1-7 ms instead of 0.03 ms. PASSIVE threads
sleep at once (BENCHMARKS.md, "Under load").
"""

import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
