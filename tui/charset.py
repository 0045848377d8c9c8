"""Which characters the terminal can draw: Unicode blocks, or plain ASCII.

With ``LANG=C`` / ``LC_ALL=C`` (or POSIX), a locale that does not name UTF-8, or a
stdout whose encoding is not UTF-8, the widgets draw with ASCII only: lattices with
``#``, ``"`` and ``.``, plots with ``*`` markers and ``-``/``|``/``+`` axes.
``MLETUI_ASCII=1`` forces ASCII and ``MLETUI_ASCII=0`` forces Unicode.

Python 3.11 coerces the C locale to C.UTF-8 at start-up (PEP 538) and writes
``LC_CTYPE=C.UTF-8`` into the environment, so ``LANG=C`` is read from ``LANG``
itself when ``LC_CTYPE`` holds exactly that coerced value.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Mapping

_C_LOCALES = ("C", "POSIX")


def _names_utf8(loc: str) -> bool:
    low = loc.lower().replace("-", "")
    return "utf8" in low


def ascii_only(environ: Mapping[str, str] | None = None, encoding: str | None = None) -> bool:
    """True when the terminal should be drawn with ASCII characters only."""
    env = os.environ if environ is None else environ
    forced = env.get("MLETUI_ASCII")
    if forced is not None and forced.strip() != "":
        return forced.strip().lower() not in ("0", "false", "no", "off")
    lc_all = env.get("LC_ALL", "")
    if lc_all:
        return not _names_utf8(lc_all)
    lang = env.get("LANG", "")
    lc_ctype = env.get("LC_CTYPE", "")
    if lc_ctype and not (lc_ctype == "C.UTF-8" and lang in _C_LOCALES):
        return not _names_utf8(lc_ctype)
    if lang:
        return not _names_utf8(lang)
    if encoding is None:
        encoding = getattr(sys.__stdout__, "encoding", None) or ""
    return not _names_utf8(encoding)


@dataclass(frozen=True)
class Glyphs:
    """The characters one drawing mode uses."""

    ascii: bool
    both: str          # lattice cell, both half-pixels up
    top: str           # upper half only
    bottom: str        # lower half only
    empty: str
    ramp: str          # heatmap shades, low to high (used without colour)
    live: str          # ParamPanel: marks params that re-initialise the run
    cursor: str        # ParamPanel: the selected row
    sep: str           # status bar separator

    def text(self, s: str) -> str:
        """Text for this terminal: as given in Unicode mode; in ASCII mode Greek letters
        are spelled out (``λ`` -> ``lambda``) and other symbols get look-alikes."""
        return to_ascii(s) if self.ascii else s


UNICODE = Glyphs(ascii=False, both="█", top="▀", bottom="▄", empty=" ", ramp=" ░▒▓█",
                 live="↻", cursor="▸", sep=" │ ")
ASCII = Glyphs(ascii=True, both="#", top='"', bottom=".", empty=" ", ramp=" .:-=+*#%@",
               live="*", cursor=">", sep=" | ")


def glyphs(ascii: bool | None = None) -> Glyphs:
    if ascii is None:
        ascii = ascii_only()
    return ASCII if ascii else UNICODE


# Box-drawing, block and bullet characters, mapped to ASCII look-alikes. (Plots in ASCII mode
# need none of it: tui/widgets/chart.py hands plotext ASCII markers only.)
_TO_ASCII = {
    **{c: "-" for c in "─━┄┅┈┉╌╍═╴╶╸╺"},
    **{c: "|" for c in "│┃┆┇┊┋╎╏║╵╷╹╻"},
    **{c: "+" for c in "┌┍┎┏┐┑┒┓└┕┖┗┘┙┚┛├┝┞┟┠┡┢┣┤┥┦┧┨┩┪┫┬┭┮┯┰┱┲┳┴┵┶┷┸┹┺┻┼┽┾┿╀╁╂╃╄╅╆╇╈╉╊╋╔╗╚╝╠╣╦╩╬╭╮╯╰"},
    **{c: "#" for c in "█▉▊▋▌▍▎▏▐▀▄▖▗▘▙▚▛▜▝▞▟▓▒░"},
    "•": "*", "·": ".", "…": "...", "▸": ">", "▴": "^", "▾": "v", "↻": "*",
}
# Help texts, titles and notes: Greek letters by name, mathematical signs by look-alikes.
_GREEK = dict(zip("αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΦΨΩ",
                  ("alpha beta gamma delta eps zeta eta theta iota kappa lambda mu nu xi pi rho "
                   "sigma tau upsilon phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi "
                   "Psi Omega").split()))
_SIGNS = {
    "µ": "u", "≈": "~", "∝": "~", "≥": ">=", "≤": "<=", "≠": "!=", "×": "x", "±": "+/-",
    "—": "--", "–": "-", "−": "-", "√": "sqrt", "∇": "grad", "∂": "d", "⊗": "(x)",
    "←": "<-", "→": "->", "⟨": "<", "⟩": ">", "²": "^2", "³": "^3", "¹": "^1", "⁻": "^-",
    "ᵀ": "^T", "½": "1/2", "¼": "1/4", "¾": "3/4", "∞": "inf", "∑": "Sum",
}
_TO_ASCII.update(_GREEK)
_TO_ASCII.update(_SIGNS)
_TABLE = str.maketrans(_TO_ASCII)


def to_ascii(text: str) -> str:
    """Replace box-drawing, block and braille characters by ASCII look-alikes, Greek
    letters by their names; anything else outside ASCII becomes ``?``."""
    out = text.translate(_TABLE)
    if any(ord(c) > 127 for c in out):
        out = "".join(c if ord(c) < 128 else ("*" if 0x2800 < ord(c) <= 0x28FF else
                                               " " if ord(c) == 0x2800 else "?") for c in out)
    return out
