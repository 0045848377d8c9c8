"""The Textual UI. Importing it imports :mod:`mletui.engine` first, so the engine's OpenMP
wait policy (``OMP_WAIT_POLICY``, see that package) is in the environment before anything
under here imports torch."""

import mletui.engine  # noqa: F401
