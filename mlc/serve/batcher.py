"""Micro-batching. Each request's rows are checked on their own (its errors are its own
4xx); requests that arrive within `window` seconds of the first are then concatenated
and run as one batch, and the answer is sliced back per request.

The model runs on one worker thread, off the event loop, so the server keeps accepting
and checking requests while a batch computes; requests that arrive meanwhile form the
next batch. A batch whose tables differ in arrow schema (a number column sent as text by
one client) runs as one batch per schema. If a batch fails as a whole (a cell that only
encoding rejects), each of its requests is run alone, so one bad request never fails
another. window == 0 turns batching off: each request runs alone on the same thread.

The model pads each run to one of a few sizes itself (runtime/artifact.py BUCKETS), so a
batch of any size never compiles on the request path; the server calls `model.warmup()`
to compile them all before it listens.
"""
from __future__ import annotations

import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa


class ShuttingDown(Exception):
    """A request still waiting when the server stops (after uvicorn's drain timeout): 503."""


@dataclass
class Job:
    table: pa.Table
    future: asyncio.Future

    @property
    def rows(self) -> int:
        return self.table.num_rows


class Batcher:
    def __init__(self, model, window_s: float, max_rows: int):
        self.model = model
        self.window = max(0.0, window_s)
        self.max_rows = max_rows
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlc-predict")
        self.pending: collections.deque[Job] = collections.deque()
        self.wake: asyncio.Event | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0  # counted for /health and the benchmark
        self.requests = 0

    async def start(self):
        self.wake = asyncio.Event()
        if self.window > 0:
            self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self):
        """After uvicorn has drained in-flight requests: nothing is pending any more."""
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        for job in self.pending:
            if not job.future.done():
                job.future.set_exception(ShuttingDown("the server is shutting down; send the request again"))
        self.executor.shutdown(wait=True)

    async def predict(self, table: pa.Table) -> dict[str, list]:
        """The predictions of one request's checked rows; raises what predicting them raises."""
        loop = asyncio.get_running_loop()
        self.requests += 1
        if self.task is None:  # batching off
            self.batches += 1
            return await loop.run_in_executor(self.executor, self.model.predict, table)
        job = Job(table, loop.create_future())
        self.pending.append(job)
        self.wake.set()
        return await job.future

    async def _loop(self):
        loop = asyncio.get_running_loop()
        while True:
            while not self.pending:
                self.wake.clear()
                await self.wake.wait()
            if sum(j.rows for j in self.pending) < self.max_rows:
                await asyncio.sleep(self.window)  # let the requests arriving together join
            jobs, rows = [], 0
            while self.pending and (not jobs or rows + self.pending[0].rows <= self.max_rows):
                job = self.pending.popleft()
                if job.future.done():  # the client went away
                    continue
                jobs.append(job)
                rows += job.rows
            if not jobs:
                continue
            self.batches += 1
            try:
                results = await loop.run_in_executor(self.executor, self._run, [j.table for j in jobs])
            except Exception as e:  # noqa: BLE001 - never leave a request waiting
                results = [e] * len(jobs)
            for job, res in zip(jobs, results):
                if job.future.done():
                    continue
                if isinstance(res, BaseException):
                    job.future.set_exception(res)
                else:
                    job.future.set_result(res)

    # ---- on the worker thread -----------------------------------------------------------
    def _one(self, table: pa.Table):
        try:
            return self.model.predict(table)
        except Exception as e:  # noqa: BLE001 - handed to its request, answered there
            return e

    def _run(self, tables: list[pa.Table]) -> list:
        out: list = [None] * len(tables)
        groups: dict[pa.Schema, list[int]] = {}
        for i, t in enumerate(tables):
            groups.setdefault(t.schema, []).append(i)
        for idxs in groups.values():
            if len(idxs) == 1:
                out[idxs[0]] = self._one(tables[idxs[0]])
                continue
            try:
                preds = self.model.predict(pa.concat_tables([tables[i] for i in idxs]))
            except Exception:  # noqa: BLE001 - find whose rows: each request alone
                for i in idxs:
                    out[i] = self._one(tables[i])
                continue
            start = 0
            for i in idxs:
                end = start + tables[i].num_rows
                out[i] = {c: v[start:end] for c, v in preds.items()}
                start = end
        return out
