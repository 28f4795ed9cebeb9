"""`mlc serve` as users run it: the real server in a subprocess on a loopback port.

A load test (64 concurrent clients for about 3 s, good and malformed requests mixed):
every good answer equals `mlc predict`'s for the same rows, every bad one gets its 4xx,
requests were batched, and the server is healthy after. Plus /schema, /openapi.json, a
.mlcc artifact, and SIGTERM draining an in-flight request before the process exits.
Everything runs on the CPU (MLC_DEVICE=cpu), like the `mlc predict` it is compared with.
"""
from __future__ import annotations

import csv
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MLC = [sys.executable, "-m", "mlc.cli"]
ENV = {**os.environ, "MLC_DEVICE": "cpu"}
INPUTS = ["sex", "age", "passenger_class"]
MAX_ROWS, MAX_BODY = 64, 64 << 10


def _mlc(*args, cwd=None, timeout=300):
    r = subprocess.run(MLC + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=ENV,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port, method, path, body=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


class Server:
    """`mlc serve MODEL ARGS...` started at once; `ready()` waits for its /health."""

    def __init__(self, model, *args):
        self.port = _free_port()
        self.proc = subprocess.Popen(MLC + ["serve", str(model), "--port", str(self.port), *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)

    def ready(self) -> "Server":
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mlc serve exited {self.proc.returncode}:\n{self.proc.stdout.read()}")
            try:
                if _request(self.port, "GET", "/health", timeout=2)[0] == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("mlc serve did not answer /health within 120 s")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A titanic model trained briefly; then at once, each in its own process: `mlc predict`
    on test rows (with missing and unseen values), `mlc compile --target cpu` and the
    server; then a server of the .mlcc with a long batching window (for the SIGTERM test)."""
    d = tmp_path_factory.mktemp("serve")
    (d / "data").mkdir()
    shutil.copy(EXAMPLES / "data" / "titanic.csv", d / "data" / "titanic.csv")
    (d / "titanic.dml").write_text((EXAMPLES / "titanic.dml").read_text() + "\ntrain { epochs = 1 }\n")
    _mlc("run", "titanic.dml", "--out", "out", cwd=d)
    with open(EXAMPLES / "data" / "titanic.csv") as f:
        rows = [{c: r[c] for c in INPUTS} for r in csv.DictReader(f)][:300]
    for r in rows:
        r["age"] = float(r["age"]) if r["age"] else None
    rows += [{"sex": "male", "age": 40.0, "passenger_class": "4th"}, {"sex": None, "age": None, "passenger_class": None}]
    with open(d / "rows.csv", "w", newline="") as f:
        w = csv.DictWriter(f, INPUTS)
        w.writeheader()
        w.writerows(rows)
    model, compiled = d / "out" / "model.mlc", d / "titanic.cpu.mlcc"
    jobs = [subprocess.Popen(MLC + args, cwd=d, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for args in (["predict", "out/model.mlc", "--data", "rows.csv", "--out", "pred.csv"],
                         ["compile", "out/model.mlc", "--target", "cpu", "--out", str(compiled)])]
    servers = [Server(model, "--max-batch-rows", MAX_ROWS, "--max-body-bytes", MAX_BODY)]
    try:
        for job in jobs:
            out, _ = job.communicate(timeout=300)
            assert job.returncode == 0, out
        servers.append(Server(compiled, "--batch-window-ms", 1000, "--max-batch-rows", 32))  # holds requests
        with open(d / "pred.csv") as f:
            expected = list(csv.DictReader(f))
        yield {"model": model, "rows": rows, "expected": expected, "server": servers[0], "mlcc_server": servers[1]}
    finally:
        for s in servers:
            s.stop()


@pytest.fixture(scope="module")
def server(trained):
    s = trained["server"].ready()
    yield s
    code, out = s.stop()
    assert code in (0, -signal.SIGTERM) and "Finished server process" in out, out


def _same(got: dict, want: dict) -> bool:
    """One answer row against one row of `mlc predict`'s CSV: the same label, and the same
    probability to float32 precision (XLA on the CPU may round the last bit of a float32
    differently for another batch size; the server's batches differ from the file's)."""
    return got["survived"] == want["survived"] and abs(got["survived_probability"] -
                                                       float(want["survived_probability"])) <= 1e-6


def _cases(rows, expected):
    """(body, expected status, the rows it predicts, form) for good and malformed requests."""
    good, bad = [], []
    for _ in range(200):
        k = random.choice([1, 1, 1, 2, 5, 17])
        idx = random.sample(range(len(rows)), k)
        sel = [rows[i] for i in idx]
        if random.random() < 0.2:  # ages as text: another arrow schema, batched apart, read as the CSV is
            sel = [{**r, "age": None if r["age"] is None else repr(r["age"])} for r in sel]
        if random.random() < 0.5:
            good.append((json.dumps(sel).encode(), 200, idx, "rows"))
        else:
            good.append((json.dumps({"columns": {c: [r[c] for r in sel] for c in INPUTS}}).encode(), 200, idx, "columns"))
    ok = rows[0]
    bad += [(b"[{\"sex\": ", 400, "not JSON", None), (b"", 400, "empty", None),
            (json.dumps({"sex": "male"}).encode(), 422, "wrap it in a list", None),
            (json.dumps([{"sex": "male", "age": 3}]).encode(), 422, "passenger_class", None),
            (json.dumps({"columns": {"sex": ["male"], "age": [1]}}).encode(), 422, "passenger_class", None),
            (json.dumps([{**ok, "age": "old"}]).encode(), 422, "`age`", None),
            (json.dumps([ok, {**ok, "age": [1, 2]}]).encode(), 422, "`age`", None),
            (json.dumps([{**ok, "passenger_class": 3}]).encode(), 422, "`passenger_class`", None),
            (json.dumps({"rows": 5}).encode(), 422, "`rows`", None),
            (json.dumps([ok] * (MAX_ROWS + 1)).encode(), 413, "rows", None),
            (json.dumps([ok] * 1200).encode(), 413, "bytes", None)]
    assert len(bad[-1][0]) > MAX_BODY and len(bad[-2][0]) < MAX_BODY
    return good, bad


def test_load_good_and_malformed_answers_match_mlc_predict(server, trained):
    rows, expected = trained["rows"], trained["expected"]
    random.seed(0)
    good, bad = _cases(rows, expected)
    failures, counts, lock = [], {"good": 0, "bad": 0}, threading.Lock()
    stop = time.time() + 3.0

    def client(seed):
        rnd = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        while time.time() < stop:
            body, status, what, form = rnd.choice(good) if rnd.random() < 0.7 else rnd.choice(bad)
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                got = r.status, json.loads(r.read())
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                with lock:
                    failures.append(f"{type(e).__name__}: {e} (expected {status})")
                continue
            problem = None
            if got[0] != status:
                problem = f"status {got[0]}, expected {status}: {got[1]}"
            elif status == 200:
                preds = got[1]["predictions"]
                if form == "columns":
                    preds = [dict(zip(preds, vals)) for vals in zip(*preds.values())]
                if len(preds) != len(what) or not all(_same(p, expected[i]) for p, i in zip(preds, what)):
                    problem = f"answer differs from mlc predict: {preds} vs {[expected[i] for i in what]}"
            elif what not in got[1].get("error", ""):
                problem = f"error for {status} does not mention {what!r}: {got[1]}"
            with lock:
                counts["good" if status == 200 else "bad"] += 1
                if problem:
                    failures.append(problem)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, f"{len(failures)} failures, first: {failures[:3]}"
    assert counts["good"] > 64 and counts["bad"] > 16, counts
    status, health = _request(server.port, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["batches"] < health["requests"], health  # concurrent requests shared batches
    # and a plain request still gets the right answer
    status, body = _request(server.port, "POST", "/predict", {"rows": rows[:3]})
    assert status == 200 and all(_same(p, e) for p, e in zip(body["predictions"], expected[:3]))


def test_schema_and_openapi_come_from_the_program(server):
    status, s = _request(server.port, "GET", "/schema")
    assert status == 200
    assert [(i["name"], i["type"]) for i in s["inputs"]] == [("sex", "binary"), ("age", "number"),
                                                             ("passenger_class", "category")]
    assert sorted(s["inputs"][0]["values"]) == ["female", "male"]
    assert sorted(s["inputs"][2]["values"]) == ["1st", "2nd", "3rd"]
    assert s["outputs"][0]["name"] == "survived" and s["outputs"][0]["columns"] == ["survived", "survived_probability"]
    status, api = _request(server.port, "GET", "/openapi.json")
    assert status == 200 and api["openapi"].startswith("3.1")
    row = api["components"]["schemas"]["Row"]
    assert row["required"] == INPUTS and set(row["properties"]) == set(INPUTS)
    assert "3rd" in row["properties"]["passenger_class"]["description"]
    assert {"200", "400", "413", "422"} <= set(api["paths"]["/predict"]["post"]["responses"])
    assert _request(server.port, "GET", "/nowhere")[0] == 404
    assert _request(server.port, "GET", "/predict")[0] == 405


def test_empty_and_edge_requests(server):
    assert _request(server.port, "POST", "/predict", []) == (200, {"predictions": []})
    status, body = _request(server.port, "POST", "/predict", {"columns": {c: [] for c in INPUTS}})
    assert status == 200 and body == {"predictions": {"survived": [], "survived_probability": []}}
    status, body = _request(server.port, "POST", "/predict", b"[" * 60_000)  # too deep for the parser
    assert status == 400 and "JSON" in body["error"]
    status, body = _request(server.port, "POST", "/predict", [{"sex": "male", "age": 1e308 * 10, "passenger_class": "1st"}])
    assert status == 400 or status == 422, body  # Infinity: not JSON for strict readers; infinite for the model
    status, body = _request(server.port, "POST", "/predict",
                            {"columns": {"sex": ["male", "female"], "age": [1], "passenger_class": ["1st", "2nd"]}})
    assert status == 422 and "lengths differ" in body["error"]


def test_mlcc_artifact_and_sigterm_drains_in_flight_requests(trained):
    rows, expected = trained["rows"], trained["expected"]
    s = trained["mlcc_server"].ready()  # a .mlcc, batching within 1 s: a request stays in flight
    status, body = _request(s.port, "POST", "/predict", rows[:20])
    assert status == 200 and all(_same(p, e) for p, e in zip(body["predictions"], expected[:20]))
    result = {}

    def slow():
        result["answer"] = _request(s.port, "POST", "/predict", rows[20:25])
    t = threading.Thread(target=slow)
    t.start()
    deadline = time.time() + 30
    while _request(s.port, "GET", "/health")[1]["requests"] < 2:  # until it waits in the batching window
        assert time.time() < deadline, "the request never reached the server"
        time.sleep(0.01)
    assert "answer" not in result
    s.proc.send_signal(signal.SIGTERM)
    t.join(timeout=30)
    status, body = result["answer"]
    assert status == 200 and all(_same(p, e) for p, e in zip(body["predictions"], expected[20:25]))
    code, out = s.stop()  # uvicorn ends with the signal's own status once drained
    assert code in (0, -signal.SIGTERM) and "Finished server process" in out, out
    with pytest.raises(OSError):  # and it no longer listens
        _request(s.port, "GET", "/health", timeout=2)


def test_batcher_groups_schemas_and_isolates_bad_requests():
    """The batching logic alone, on a stand-in model: concurrent requests share a run per
    arrow schema, and a run that fails is retried request
    by request, so only the bad request gets the error."""
    import asyncio

    import pyarrow as pa

    from mlc.serve.batcher import Batcher

    class Model:
        runs = []

        def predict(self, table):
            self.runs.append(table.num_rows)
            xs = table.column("x").to_pylist()
            if "bad" in xs:
                raise ValueError("column `x` holds 'bad'")
            return {"y": [f"{x}!" for x in xs]}

    async def main():
        b = Batcher(Model(), 0.05, 8)
        await b.start()
        tables = [pa.table({"x": [1, 2, 3]}), pa.table({"x": ["a"]}), pa.table({"x": ["bad", "b"]}),
                  pa.table({"x": [4.5]}), pa.table({"x": list(range(6))})]
        out = await asyncio.gather(*(b.predict(t) for t in tables), return_exceptions=True)
        await b.stop()
        return b, out

    b, out = asyncio.run(main())
    assert out[0] == {"y": ["1!", "2!", "3!"]} and out[1] == {"y": ["a!"]} and out[3] == {"y": ["4.5!"]}
    assert isinstance(out[2], ValueError) and "`x`" in str(out[2])
    assert out[4] == {"y": [f"{i}!" for i in range(6)]}
    # batch 1: [1,2,3] alone (its schema), "a" + "bad,b" (failed, then each alone), [4.5]; batch 2: 6 rows
    assert sorted(Model.runs) == [1, 1, 2, 3, 3, 6], Model.runs
    assert b.batches == 2 and b.requests == 5  # the first 8 rows in one batch, the 6 rows in the next
