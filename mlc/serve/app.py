"""The HTTP server of `mlc serve`: Starlette routes on uvicorn.

Starlette and uvicorn: small, well kept ASGI libraries; the request schema comes from the
trained program (schema.py), so a validation framework such as pydantic adds nothing.

Every mistake in a request is a JSON answer {"error": "..."} that names the field and the
problem: 400 not JSON, 413 too large, 422 rows the model cannot read. Never a 500 for
a request's content, and never a dead server.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlc.diagnostics import UserError
from mlc.serve import schema as S
from mlc.serve.batcher import Batcher, ShuttingDown

CONFIG_ENV = "MLC_SERVE_CONFIG"  # how `--workers N` hands the settings to each worker process
BIG_BODY = 64 << 10  # bodies over this are parsed and checked on a thread, off the event loop
log = logging.getLogger("mlc.serve")


@dataclass
class Config:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    batch_window_ms: float = 2.0
    max_batch_rows: int = 4096
    max_body_bytes: int = 8 << 20
    access_log: bool = False


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def error(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status, media_type="application/json")


def answer(body) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise RequestError(400, f"Content-Length {declared[:40]!r} is not a number") from None
        if n > limit:
            raise RequestError(413, f"the body is {n} bytes; this server takes at most {limit} bytes a request "
                                    "(--max-body-bytes); send fewer rows per request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over {limit} bytes, the most this server takes a request "
                                    "(--max-body-bytes); send fewer rows per request")
        chunks.append(chunk)
    return b"".join(chunks)


def parse(body: bytes, names: list[str], max_rows: int):
    """JSON -> (rows or columns for rows_to_table, "rows" | "columns", row count)."""
    if not body.strip():
        raise RequestError(400, "the body is empty; send JSON rows, such as [{...}] or {\"columns\": {...}}")
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not JSON: it is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the body is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # nesting too deep, an integer too long
        raise RequestError(400, f"the body is not JSON this server reads ({str(e)[:120] or type(e).__name__})") from None
    shape = ("give a list of row objects [{...}], {\"rows\": [{...}]}, or {\"columns\": {input: [values]}} "
             f"with the inputs {', '.join(names)}")
    if isinstance(data, list):
        form, payload = "rows", data
    elif isinstance(data, dict) and "rows" in data:
        form, payload = "rows", data["rows"]
        if not isinstance(payload, list):
            raise RequestError(422, f"`rows` is {S.json_type(payload)}, not a list of row objects; {shape}")
    elif isinstance(data, dict) and "columns" in data:
        form, payload = "columns", data["columns"]
        if not isinstance(payload, dict):
            raise RequestError(422, f"`columns` is {S.json_type(payload)}, not an object {{input: [values]}}; {shape}")
    elif isinstance(data, dict) and any(n in data for n in names):
        raise RequestError(422, f"the body is one object of input values; wrap it in a list, [{{...}}], "
                                f"or send columns as {{\"columns\": {{...}}}}")
    else:
        raise RequestError(422, f"the body is {S.json_type(data)} without rows; {shape}")
    if form == "rows":
        n = len(payload)
    else:
        n = max((len(v) for v in payload.values() if isinstance(v, list)), default=0)
    if n > max_rows:
        raise RequestError(413, f"the request holds {n} rows; this server takes at most {max_rows} rows a request "
                                "(--max-batch-rows); split it")
    return payload, form, n


class Server:
    """The loaded model, its batcher and the routes."""

    def __init__(self, model, config: Config, name: str):
        self.model, self.config, self.name = model, config, name
        self.names = list(model.inputs)
        self.batcher = Batcher(model, config.batch_window_ms / 1000, config.max_batch_rows)
        # The columns `mlc predict` writes, from one row with every cell missing; then every
        # batch size the batcher runs is compiled before the first request.
        probe = model.predict({c: [None] for c in self.names})
        self.columns = {c: S.json_type(v[0]) for c, v in probe.items()}
        # on the thread that predicts: the first thread to change numpy's BLAS thread count is
        # the only one threadpoolctl lets change it again (mlc/backends/numpy_backend.py)
        self.batcher.executor.submit(model.warmup).result()
        self.empty = {c: [] for c in self.columns}
        self.schema = S.describe(model, self.columns)
        self.openapi = S.openapi(model, self.columns, f"mlc: {name}",
                                 {"max_rows": config.max_batch_rows, "max_body_bytes": config.max_body_bytes})
        self.started = time.time()

    def app(self) -> Starlette:
        routes = [Route("/predict", self.predict, methods=["POST"]), Route("/health", self.health),
                  Route("/schema", self.get_schema), Route("/openapi.json", self.get_openapi)]

        async def http_error(request, exc: HTTPException):  # 404, 405 as JSON too
            return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

        @contextlib.asynccontextmanager
        async def lifespan(app):
            await self.batcher.start()
            yield
            await self.batcher.stop()
        return Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)

    async def health(self, request: Request) -> Response:
        import jax
        return answer({"status": "ok", "model": self.name, "device": jax.default_backend(),
                       "uptime_seconds": round(time.time() - self.started, 1),
                       "requests": self.batcher.requests, "batches": self.batcher.batches})

    async def get_schema(self, request: Request) -> Response:
        return answer(self.schema)

    async def get_openapi(self, request: Request) -> Response:
        return answer(self.openapi)

    def _check(self, body: bytes):
        """Parse and check one request: (arrow table, form, rows) or a RequestError."""
        from mlc.runtime.artifact import rows_to_table
        payload, form, n = parse(body, self.names, self.config.max_batch_rows)
        if n == 0 and (form == "rows" or all(isinstance(payload.get(c), list) for c in self.names)):
            return None, form, 0
        try:
            return rows_to_table(payload, self.model.resolved, self.model.state), form, n
        except (UserError, ValueError, TypeError) as e:
            raise RequestError(422, str(e)) from None

    async def predict(self, request: Request) -> Response:
        try:
            body = await read_body(request, self.config.max_body_bytes)
            if len(body) > BIG_BODY:
                from starlette.concurrency import run_in_threadpool
                table, form, n = await run_in_threadpool(self._check, body)
            else:
                table, form, n = self._check(body)
            if n == 0:
                preds = self.empty
            else:
                try:
                    preds = await self.batcher.predict(table)
                except (UserError, ValueError, TypeError) as e:  # a cell only encoding rejects, NaN scores
                    raise RequestError(422, str(e)) from None
        except RequestError as e:
            return error(e.status, e.message)
        except ShuttingDown as e:
            return error(503, str(e))
        except Exception as e:  # noqa: BLE001 - a bug of ours: say so, keep serving
            log.error("POST /predict failed:\n%s", traceback.format_exc())
            return error(500, f"internal error ({type(e).__name__}: {str(e)[:200]}); the server keeps running")
        if form == "columns":
            return answer({"predictions": dict(preds)})
        cols = list(preds)
        return answer({"predictions": [dict(zip(cols, vals)) for vals in zip(*(preds[c] for c in cols))]})


def _load(config: Config):
    import mlc
    return mlc.load(config.model)


def create_app() -> Starlette:
    """For `--workers N`: each worker process builds its own server from $MLC_SERVE_CONFIG."""
    config = Config(**json.loads(os.environ[CONFIG_ENV]))
    return Server(_load(config), config, Path(config.model).name).app()


def check_address(host: str, port: int):
    """A clean error for an address in use or not of this machine (uvicorn would exit 3 after a log line)."""
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(addr)
        except OSError as e:
            hint = "; choose another --port, or stop what listens there" if e.errno == 98 else ""
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}){hint}") from None


def serve(config: Config, say=lambda m: print(m, file=sys.stderr)):
    """Load the model (errors are clean UserErrors, before the port is taken), then serve
    until SIGINT or SIGTERM; uvicorn finishes in-flight requests before exiting."""
    import uvicorn
    if config.workers > 1:
        # Several processes share the accelerator: none may take most of its memory up front.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    check_address(config.host, config.port)  # before the seconds that loading takes
    t0 = time.perf_counter()
    model = _load(config)  # with --workers N, only checked here: each worker loads its own
    kw = dict(host=config.host, port=config.port, access_log=config.access_log, log_level="info",
              timeout_graceful_shutdown=30, server_header=False)
    batching = (f"batching requests within {config.batch_window_ms:g} ms, up to {config.max_batch_rows} rows"
                if config.batch_window_ms > 0 else "batching off")
    if config.workers == 1:
        server = Server(model, config, Path(config.model).name)
        import jax
        say(f"serving {config.model} ({len(model.inputs)} inputs; outputs {', '.join(model.outputs)}) on "
            f"http://{config.host}:{config.port} ({jax.default_backend()}; loaded and compiled in "
            f"{time.perf_counter() - t0:.1f} s; {batching})")
        uvicorn.run(server.app(), **kw)
        return
    del model
    os.environ[CONFIG_ENV] = json.dumps(asdict(config))
    say(f"serving {config.model} on http://{config.host}:{config.port} with {config.workers} worker processes "
        f"({batching}, per worker)")
    uvicorn.run("mlc.serve.app:create_app", factory=True, workers=config.workers, **kw)
