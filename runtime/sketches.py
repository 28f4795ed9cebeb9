"""Mergeable summaries for one streaming pass over data larger than memory.

Each summary takes record batches one at a time (`add`), merges with another of its
kind (`merge`, so shards or processes can be summarized apart), and holds memory
independent of the number of rows:

- Moments: count, missing count, mean, variance (Chan et al.'s pairwise update, exact up
  to rounding), min and max. Exact: mean, zscore and minmax normalization, the mean fill,
  the missing indicator, a constant column.
- Sample: a uniform sample of at most K rows' values, the K smallest of a hash of each
  row's position and the seed (bottom-K sampling: deterministic, and the merge of two is
  the sample of the union). Quantiles read from it (the median fill, robust scaling,
  `ple` bin edges) are off by at most eps in rank with probability 1 - delta, where
  eps = sqrt(ln(2 / delta) / (2 K)) (Dvoretzky-Kiefer-Wolfowitz): with K = 2^18 and
  delta = 1e-6, eps = 0.0052 (half a percentile). With fewer than K rows it is exact.
- Counts: exact counts of each distinct value (vocabularies with `min_count`, class
  priors): memory grows with the number of distinct values, not of rows.
"""
from __future__ import annotations

import math

import numpy as np

SAMPLE_SIZE = 1 << 18


def rank_error(k: int = SAMPLE_SIZE, delta: float = 1e-6) -> float:
    """The DKW bound on the rank error of a quantile read from a uniform sample of k."""
    return math.sqrt(math.log(2 / delta) / (2 * k))


class Moments:
    def __init__(self):
        self.n = self.missing = 0
        self.mean = self.m2 = 0.0
        self.min, self.max = math.inf, -math.inf

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64)
        present = values[~np.isnan(values)]
        self.missing += int(values.size - present.size)
        if present.size:
            other = Moments()
            other.n, other.mean = int(present.size), float(present.mean())
            other.m2 = float(((present - other.mean) ** 2).sum())
            other.min, other.max = float(present.min()), float(present.max())
            self.merge(other)

    def merge(self, o: "Moments") -> None:
        self.missing += o.missing
        if not o.n:
            return
        n = self.n + o.n
        delta = o.mean - self.mean
        self.mean += delta * o.n / n
        self.m2 += o.m2 + delta * delta * self.n * o.n / n
        self.n = n
        self.min, self.max = min(self.min, o.min), max(self.max, o.max)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0


def position_hash(positions: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit mix (splitmix64) of each row position and the seed: uniform, deterministic."""
    with np.errstate(over="ignore"):
        z = positions.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class Sample:
    """Bottom-K sample of row positions (and their keys); the caller keeps the rows."""

    def __init__(self, k: int = SAMPLE_SIZE, seed: int = 0):
        self.k, self.seed = k, seed
        self.keys = np.empty(0, np.uint64)
        self.positions = np.empty(0, np.int64)

    def add(self, positions: np.ndarray) -> np.ndarray:
        """Offer these row positions; returns the mask of those taken into the sample."""
        keys = position_hash(positions, self.seed)
        if self.keys.size >= self.k:  # only keys below the current K-th can enter
            taken = keys < self.keys.max()
        else:
            taken = np.ones(keys.size, bool)
        self.keys = np.concatenate([self.keys, keys[taken]])
        self.positions = np.concatenate([self.positions, positions[taken]])
        if self.keys.size > 2 * self.k:
            self._trim()
        return taken

    def _trim(self) -> None:
        if self.keys.size > self.k:
            keep = np.argpartition(self.keys, self.k - 1)[: self.k]
            self.keys, self.positions = self.keys[keep], self.positions[keep]

    def merge(self, o: "Sample") -> None:
        self.keys = np.concatenate([self.keys, o.keys])
        self.positions = np.concatenate([self.positions, o.positions])
        self._trim()

    def final_positions(self) -> np.ndarray:
        """The sampled row positions, in ascending order."""
        self._trim()
        return np.sort(self.positions)


class Counts:
    def __init__(self):
        self.counts: dict = {}

    def add(self, values, counts) -> None:
        for v, c in zip(values, counts):
            self.counts[v] = self.counts.get(v, 0) + int(c)

    def merge(self, o: "Counts") -> None:
        self.add(o.counts.keys(), o.counts.values())

    def most_common(self) -> list[tuple]:
        """(value, count), most frequent first, ties by value (the in-memory order)."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
