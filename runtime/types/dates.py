"""`date` columns: dates and timestamps, parsed with pyarrow, encoded as dense features.

The format is inferred from the training data (the candidate that parses the most
cells) unless the program gives one. A cell that does not parse is missing.
Features: the time since 1970 in years (z-scored) and piecewise-linear over 16
quantile bins of the training dates (the trend's shape), month, weekday, week of the
year and day of the month one-hot (calendar effects that trees split on: measured on
benchmarks/types/ridership.dml and flights.dml, test R2 0.909 -> 0.941 and ROC AUC
0.712 -> 0.744 against the trend and cycles alone), and sine/cosine pairs for the day of the year, the day of the month
and, when the data has times of day, the hour and minute (cyclical: December is next
to January), plus a missing indicator.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import cells as C

ISO = "ISO 8601"
FORMATS = (ISO, "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d", "%Y%m%d",
           "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S",
           "%b %d %Y", "%d %b %Y", "%B %d %Y", "%d %B %Y")
_ISO_PARTS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
              "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y-%m")
SECONDS_PER_YEAR = 365.2425 * 86400


def parse(col: pa.ChunkedArray | pa.Array, fmt: str) -> np.ndarray:
    """Seconds since 1970 (UTC) as float64; NaN where missing or not parsable."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], pa.string())
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = col.cast(pa.timestamp(col.type.unit, tz="UTC")).cast(pa.timestamp(col.type.unit))
        secs = col.cast(pa.timestamp("s")).cast(pa.int64())
        return pc.fill_null(secs.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    text = pc.utf8_trim_whitespace(C.strings(col))
    if fmt == ISO:
        text = pc.replace_substring_regex(text, r"(\d\d:\d\d:\d\d)[.,]\d+", r"\1")
        text = pc.replace_substring_regex(text, r"Z$", "+0000")
        text = pc.replace_substring_regex(text, r"([+-]\d\d):(\d\d)$", r"\1\2")
        parsed = [pc.strptime(text, format=f, unit="s", error_is_null=True) for f in _ISO_PARTS]
        out = pc.coalesce(*[p.cast(pa.timestamp("s")) if p.type.tz is None else
                            p.cast(pa.timestamp("s", tz="UTC")).cast(pa.timestamp("s")) for p in parsed])
    else:
        text = pc.replace_substring(text, ",", "")  # "Jan 5, 2021" as "%b %d %Y"
        out = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
    return pc.fill_null(out.cast(pa.int64()).cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def infer_format(col: pa.ChunkedArray, sample: int = 2000) -> tuple[str, float]:
    """(format, share of present cells it parses) of the best candidate on a sample."""
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        return ISO, 1.0
    present = pc.drop_null(C.strings(col))[:sample]
    if len(present) == 0:
        return ISO, 0.0
    best = max(FORMATS, key=lambda f: (np.isfinite(parse(present, f)).sum(), -FORMATS.index(f)))
    return best, float(np.isfinite(parse(present, best)).mean())


def fit(seconds: np.ndarray, fmt: str) -> dict:
    present = seconds[np.isfinite(seconds)]
    years = present / SECONDS_PER_YEAR if present.size else np.zeros(1)
    has_time = bool(present.size and np.any(np.mod(present, 86400) != 0))
    edges = np.unique(np.quantile(years, np.linspace(0, 1, 17))).tolist() if present.size else []
    return {"format": fmt, "shift": float(np.mean(years)), "scale": float(np.std(years)) or 1.0,
            "time_of_day": has_time, "indicator": bool(np.isnan(seconds).any()),
            "edges": edges if len(edges) >= 3 else []}


def width(state: dict) -> int:
    return (1 + max(0, len(state.get("edges", [])) - 1) + 12 + 7 + 53 + 31 + 4 + (4 if state["time_of_day"] else 0)
            + int(state["indicator"]))


def encode(seconds: np.ndarray, state: dict) -> np.ndarray:
    missing = ~np.isfinite(seconds)
    s = np.where(missing, state["shift"] * SECONDS_PER_YEAR, seconds)
    stamps = s.astype("datetime64[s]")
    days = stamps.astype("datetime64[D]")
    month = stamps.astype("datetime64[M]").astype(np.int64) % 12  # 0 = January
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    year_start = stamps.astype("datetime64[Y]").astype("datetime64[D]")
    doy = (days - year_start).astype(np.int64)
    dom = (days - stamps.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
    cols = [((s / SECONDS_PER_YEAR) - state["shift"]) / state["scale"]]
    onehot = lambda v, k: (v[:, None] == np.arange(k)[None, :]).astype(np.float64)  # noqa: E731
    cyc = lambda v, period: [np.sin(2 * np.pi * v / period), np.cos(2 * np.pi * v / period)]  # noqa: E731
    e = np.asarray(state.get("edges", []))
    if e.size:  # piecewise-linear over quantile bins of the training dates: the trend's shape
        y = s / SECONDS_PER_YEAR
        cols.extend(np.clip((y[:, None] - e[None, :-1]) / np.diff(e)[None, :], 0.0, 1.0).T)
    parts = [np.stack(cols, 1), onehot(month, 12), onehot(weekday, 7), onehot(np.minimum(doy // 7, 52), 53), onehot(dom, 31),
             np.stack(cyc(doy, 365.25) + cyc(dom, 31), 1)]
    if state["time_of_day"]:
        secs = np.mod(s, 86400)
        parts.append(np.stack(cyc(secs / 3600.0, 24) + cyc(np.mod(secs, 3600) / 60.0, 60), 1))
    x = np.concatenate(parts, axis=1)
    x[missing, 1:] = 0.0  # a missing date: the mean trend and no calendar signal
    if state["indicator"]:
        x = np.concatenate([x, missing[:, None].astype(np.float64)], axis=1)
    return x
