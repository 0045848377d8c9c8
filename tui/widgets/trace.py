"""Trace: scalars over the frame history, with reference lines (e.g. the exact value).

View fields: ``series`` (scalar names drawn against ``x``, default the step),
``reference`` (scalar names drawn as horizontal lines; a reference that is None or
missing in the latest frame is written "no exact value"), options ``ylabel``,
``window`` (how many recent frames, default all the runner keeps).
Non-finite values are never drawn: the subtitle counts them and shows "nan".
"""

from __future__ import annotations

from mletui.engine.topic import Frame

from .numbers import finite, finite_pairs, fmt
from .plotext_view import PlotextView

_COLORS = ("cyan", "orange", "green", "magenta", "blue", "red")


class TraceView(PlotextView):
    needs_history = True

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        view = self.view
        frames = list(history or [frame])
        window = view.options.get("window")
        if window:
            frames = frames[-int(window):]
        width = max(self.size.width, 20)
        stride = max(1, len(frames) // (2 * width))
        if stride > 1:
            frames = frames[::-1][::stride][::-1]  # keep the latest frame
        plt = self.begin()
        xname = view.x
        xs = [f.step if xname is None else f.value(xname) for f in frames]
        notes: list[str] = []
        for k, name in enumerate(view.series):
            ys = [f.scalars.get(name) for f in frames]
            px, py, dropped = finite_pairs(xs, ys)
            if px:
                plt.plot(px, py, marker=self.glyphs.marker, color=_COLORS[k % len(_COLORS)],
                         label=name if len(view.series) > 1 else None)
            last = frame.scalars.get(name)
            note = f"{name} {fmt(last)}"
            if dropped:
                note += f" ({dropped} nan not drawn)"
            notes.append(note)
        for name in view.reference:
            ref = frame.scalars.get(name)
            if finite(ref):
                plt.hline(float(ref), color="red")
                notes.append(f"{name} {fmt(ref)}")
            else:
                notes.append(f"{name}: no exact value")
        if view.options.get("ylabel"):
            plt.ylabel(str(view.options["ylabel"]))
        self.border_subtitle = " | ".join(notes)
        self.refresh()
