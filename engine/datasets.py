"""Point data sets: the built-in generators and the loader of a user's file.

Generators return float64 arrays of shape (N, D), seeded by ``data_seed`` (numpy's
default_rng), so a reset that draws a new initialisation keeps the same data.

The loader reads ``.npy``, ``.npz`` (never unpickled: ``allow_pickle=False``) and CSV /
whitespace-separated text of floats (one optional header line, ``#`` comments). D is
taken from the file. Bad content raises :class:`DataError` (a ParamError) with one line
saying which problem and how many rows, so nothing is fitted on bad data:
NaN/inf rows, a wrong shape (ragged rows, 0-D or 3-D+ arrays), non-numeric values,
pickled object arrays, an empty file. ``load_binary`` reads the same formats as 0/1 or ±1
rows for the Boltzmann topic (engine.boltzmann_data), with the same one-line refusals.
"""

from __future__ import annotations

import os
import zipfile
from functools import lru_cache

import numpy as np

from .params import ParamError

MAX_FEATURES = 64


class DataError(ParamError):
    """A data file refused; the message is one line naming the problem."""


# -- built-in generators --------------------------------------------------------------------
def bimodal(n: int, seed: int) -> np.ndarray:
    """0.5 N(-3, 1) + 0.5 N(3, 1), 1-D."""
    rng = np.random.default_rng(seed)
    side = rng.random(n) < 0.5
    return np.where(side, -3.0, 3.0)[:, None] + rng.standard_normal((n, 1))


def bimodal_unequal(n: int, seed: int) -> np.ndarray:
    """0.4 N(-2, 1) + 0.6 N(3, 0.7^2), 1-D."""
    rng = np.random.default_rng(seed)
    first = rng.random(n) < 0.4
    z = rng.standard_normal(n)
    return np.where(first, -2.0 + z, 3.0 + 0.7 * z)[:, None]


BLOB_WEIGHTS = np.array([0.3, 0.3, 0.4])
BLOB_MEANS = np.array([[-4.0, -2.0], [3.0, -3.0], [0.0, 4.0]])
BLOB_COVARIANCES = np.array([
    [[1.5, 0.9], [0.9, 1.0]],      # correlation +0.73
    [[1.0, -0.6], [-0.6, 0.8]],    # correlation -0.67
    [[0.6, 0.3], [0.3, 2.0]],      # correlation +0.27
])


def blobs(n: int, seed: int) -> np.ndarray:
    """Three 2-D Gaussian blobs with correlated covariances (BLOB_WEIGHTS, _MEANS, _COVARIANCES)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(BLOB_WEIGHTS), size=n, p=BLOB_WEIGHTS)
    chol = np.linalg.cholesky(BLOB_COVARIANCES)
    z = rng.standard_normal((n, 2))
    return BLOB_MEANS[labels] + np.einsum("nij,nj->ni", chol[labels], z)


def ring(n: int, seed: int, radius: float = 4.0, width: float = 0.3) -> np.ndarray:
    """A 2-D ring: angle uniform, radius ~ N(radius, width^2). No finite mixture is exact here."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    r = radius + width * rng.standard_normal(n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


GENERATORS = {
    "bimodal": bimodal,
    "bimodal_unequal": bimodal_unequal,
    "blobs": blobs,
    "ring": ring,
}


def generate(name: str, n: int, seed: int) -> np.ndarray:
    try:
        gen = GENERATORS[name]
    except KeyError:
        raise ParamError(f"dataset must be one of {'|'.join(GENERATORS)}|file, got {name!r}") from None
    return gen(int(n), int(seed))


# -- a user's file ------------------------------------------------------------------------------
def load_points(path: str) -> np.ndarray:
    """The points in ``path`` as float64 (N, D), validated; DataError otherwise.
    Cached on (path, size, mtime): the topic's check and init read the file once."""
    full = os.path.expanduser(str(path))
    try:
        st = os.stat(full)
    except OSError:
        raise DataError(f"data: no readable file at {path!r}") from None
    return _load_cached(full, st.st_size, st.st_mtime_ns).copy()


@lru_cache(maxsize=4)
def _load_cached(path: str, size: int, mtime_ns: int, binary: bool = False) -> np.ndarray:
    name = os.path.basename(path)
    lower = name.lower()
    if lower.endswith(".npy"):
        arr = _load_npy(path, name)
    elif lower.endswith(".npz"):
        arr = _load_npz(path, name)
    else:
        arr = _load_text(path, name)
    pts = validate_binary(arr, name) if binary else validate_points(arr, name)
    pts.setflags(write=False)
    return pts


def _load_npy(path: str, name: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"data: {name} holds pickled Python objects; refused "
                            "(mletui never unpickles: save a float array)") from None
        raise DataError(f"data: {name} is not a readable .npy array ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise DataError(f"data: {name} is not a readable .npy file ({exc})") from None


def _load_npz(path: str, name: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if not keys:
                raise DataError(f"data: {name} holds no arrays")
            for key in ("x", "X", "data", "points"):
                if key in keys:
                    return archive[key]
            if len(keys) == 1:
                return archive[keys[0]]
            raise DataError(f"data: {name} holds {len(keys)} arrays ({', '.join(keys[:6])}); "
                            "name the points 'x' or save one array")
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"data: {name} holds pickled Python objects; refused "
                            "(mletui never unpickles: save a float array)") from None
        raise DataError(f"data: {name} is not a readable .npz archive ({str(exc).splitlines()[0]})") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"data: {name} is not a readable .npz archive ({exc})") from None


def _split(line: str) -> list[str]:
    for sep in (",", ";", "\t"):
        if sep in line:
            return [s.strip() for s in line.split(sep)]
    return line.split()


def _load_text(path: str, name: str) -> np.ndarray:
    """CSV / whitespace text of floats. Reports ragged rows and non-numeric cells by count."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError:
        raise DataError(f"data: {name} is not text (expected .npy, .npz or CSV of floats)") from None
    except OSError as exc:
        raise DataError(f"data: cannot read {name} ({exc})") from None
    rows: list[list[float]] = []
    line_numbers: list[int] = []
    width = None
    ragged: list[int] = []
    non_numeric: list[int] = []
    header_seen = False
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        cells = _split(text)
        try:
            values = [float(c) for c in cells]
        except ValueError:
            if not rows and not header_seen and not non_numeric and not ragged:
                header_seen = True  # one header line is allowed
                continue
            non_numeric.append(number)
            continue
        if width is None:
            width = len(values)
        if len(values) != width:
            ragged.append(number)
            continue
        rows.append(values)
        line_numbers.append(number)
    if non_numeric:
        raise DataError(f"data: {len(non_numeric)} rows of {name} hold non-numeric values "
                        f"(first: line {non_numeric[0]}); refused, nothing fitted")
    if ragged:
        raise DataError(f"data: wrong shape in {name}: {len(ragged)} rows do not have {width} values "
                        f"(first: line {ragged[0]}); refused, nothing fitted")
    if not rows:
        raise DataError(f"data: {name} holds no points")
    arr = np.asarray(rows, dtype=np.float64)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        first = line_numbers[int(np.argmax(bad))]
        raise DataError(f"data: {int(bad.sum())} of {len(arr)} rows of {name} have NaN/inf values "
                        f"(first: line {first}); refused, nothing fitted")
    return arr


def _numeric(arr: np.ndarray, name: str, expected: str) -> np.ndarray:
    """The array if it holds real numbers (never Python objects); DataError otherwise."""
    arr = np.asarray(arr)
    if arr.dtype == object:
        raise DataError(f"data: {name} holds Python objects; refused (mletui never unpickles)")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise DataError(f"data: {name} holds {arr.dtype} values; expected {expected}")
    return arr


def validate_points(arr: np.ndarray, name: str = "data") -> np.ndarray:
    """An array of points -> float64 (N, D), or DataError naming the problem and how many rows."""
    arr = _numeric(arr, name, "real numbers")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"data: wrong shape {tuple(arr.shape)} in {name}: expected N rows x D columns "
                        "(or N values)")
    n, d = arr.shape
    if n == 0 or d == 0:
        raise DataError(f"data: {name} holds no points (shape {tuple(arr.shape)})")
    if d > MAX_FEATURES:
        raise DataError(f"data: wrong shape {tuple(arr.shape)} in {name}: {d} columns, "
                        f"at most {MAX_FEATURES} dimensions supported")
    pts = arr.astype(np.float64)
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        raise DataError(f"data: {int(bad.sum())} of {n} rows of {name} have NaN/inf values "
                        f"(first: row {int(np.argmax(bad))}); refused, nothing fitted")
    return pts


# -- binary data (Boltzmann machines) -------------------------------------------------------
MAX_BINARY_UNITS = 4096


def load_binary(path: str) -> np.ndarray:
    """A user's binary data in ``path`` (.npy, .npz or CSV; 0/1 or ±1 values) as float64 0/1
    rows (N, D); DataError (one line, with a count) on anything else. Never unpickled."""
    full = os.path.expanduser(str(path))
    try:
        st = os.stat(full)
    except OSError:
        raise DataError(f"data: no readable file at {path!r}") from None
    return _load_cached(full, st.st_size, st.st_mtime_ns, True).copy()


def validate_binary(arr: np.ndarray, name: str = "data") -> np.ndarray:
    """Rows of 0/1 or of ±1 values -> float64 0/1 (N, D), or DataError naming the problem and
    how many rows have it (non-binary values, NaN, a mix of 0 and -1, a wrong shape, no rows)."""
    arr = _numeric(arr, name, "0/1 or -1/+1")
    if arr.ndim != 2:
        raise DataError(f"data: wrong shape {tuple(arr.shape)} in {name}: expected N rows x D binary columns")
    n, d = arr.shape
    if n == 0 or d == 0:
        raise DataError(f"data: {name} holds no rows (shape {tuple(arr.shape)})")
    if d > MAX_BINARY_UNITS:
        raise DataError(f"data: {name} has {d} columns, at most {MAX_BINARY_UNITS} units supported")
    x = arr.astype(np.float64)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DataError(f"data: {int(bad.sum())} of {n} rows of {name} have NaN/inf values "
                        f"(first: row {int(np.argmax(bad))}); refused, nothing fitted")
    nonbinary = ~np.isin(x, (-1.0, 0.0, 1.0)).all(axis=1)
    if nonbinary.any():
        raise DataError(f"data: {int(nonbinary.sum())} of {n} rows of {name} hold values other than "
                        f"0/1 or -1/+1 (first: row {int(np.argmax(nonbinary))}); refused, nothing fitted")
    if (x == -1.0).any():
        if (x == 0.0).any():
            zeros = int((x == 0.0).any(axis=1).sum())
            raise DataError(f"data: {name} mixes 0 and -1 ({zeros} of {n} rows hold a 0 beside -1 "
                            "values elsewhere): use 0/1 or -1/+1 throughout")
        x = (x + 1.0) / 2.0
    return x


def bars_and_stripes(size: int) -> np.ndarray:
    """The distinct size x size bars-and-stripes patterns, each once, float64 0/1 rows: every
    subset of rows switched on (bars) and every subset of columns (stripes), the all-off and
    all-on images counted once, so 2^(size+1) - 2 patterns (14 for 3x3, 30 for 4x4)."""
    seen: dict[bytes, np.ndarray] = {}
    for mask in range(1 << size):
        on = np.array([(mask >> i) & 1 for i in range(size)], dtype=np.float64)
        for img in (np.repeat(on[:, None], size, axis=1), np.repeat(on[None, :], size, axis=0)):
            seen.setdefault(img.tobytes(), img.reshape(-1))
    return np.stack(list(seen.values()))


DIGITS_TRAIN = 1500


def binary_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1797 images, no download) binarised at >= 8 (of 16),
    split in order: the first 1500 train, the last 297 held out. float64 0/1 rows of 64."""
    from sklearn.datasets import load_digits

    x = (load_digits().data >= 8).astype(np.float64)
    return x[:DIGITS_TRAIN], x[DIGITS_TRAIN:]
