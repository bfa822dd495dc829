"""The HTTP JSON inference server (FastAPI + uvicorn): /encode, /predict and /health.

Requests are checked here (body size, UTF-8, JSON, types, texts per request, text length),
tokenized in a thread pool, then queued for one model worker that batches concurrent requests
(`batcher.Batcher`). Every bad request gets a 4xx with `{"error": "..."}`; the server keeps
serving. Status codes: 400 unreadable body (not UTF-8, not JSON), 401 a missing or wrong API
key (when the server has one), 408 a body slower than body_timeout, 413 a size limit, 415 a
Content-Type other than application/json, 422 a well-formed request of the wrong shape (an
empty text, also one that is empty once the tokenizer has dropped control and zero-width
characters), 404 /predict on a model that is not fine-tuned, 429 too much work queued. A
connection that has not sent its headers within header_timeout is closed; a client that goes
away mid-request is logged in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request

from ernie2.inference.batcher import Batcher, Overloaded
from ernie2.inference.inputs import InputError, check_text, to_examples
from ernie2.inference.runtime import LoadedModel
from ernie2.inference.settings import LONG_POLICIES, ServeSettings

logger = logging.getLogger(__name__)

_UNBOUNDED = 1 << 30  # a max_len that never truncates: to count a text's tokens
API_KEY_ENV = "ERNIE2_API_KEY"
# Deepest JSON nesting a request may have ({"texts": [...]} is 2). Checked before parsing, so
# the answer does not depend on the interpreter's recursion limit (which other code may raise).
MAX_JSON_DEPTH = 32
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_depth(text: str) -> int:
    """The deepest bracket nesting of `text`, outside JSON strings."""
    depth = deepest = 0
    for m in _JSON_TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ---------------------------------------------------------------------- the model side
class Service:
    """The model behind the endpoints: request checking and feature building (any thread),
    and the batched model calls (the batcher's worker thread)."""

    def __init__(self, model: LoadedModel, settings: ServeSettings | None = None,
                 threads: int | None = None):
        self.model = model
        self.settings = settings = settings or ServeSettings()
        self.tokenizer = model.tokenizer
        limit = model.config.max_position_embeddings
        self.max_len = settings.max_len or model.max_len()
        if not 3 <= self.max_len <= limit:
            raise ValueError(f"max_len {self.max_len} must be between 3 and the model's "
                             f"max_position_embeddings {limit}")
        self.threads = threads
        self.batcher = Batcher(self._run, settings.max_batch, settings.max_wait_ms / 1000,
                               settings.max_queued)

    def info(self) -> dict[str, Any]:
        ft, s = self.model.finetuned, self.settings
        return {"status": "ok", "model": str(self.model.path), "backend": self.model.backend,
                "task": None if ft is None else ft.task.name,
                "labels": None if ft is None or ft.labels is None else ft.labels.names,
                "hidden_size": self.model.config.hidden_size, "max_len": self.max_len,
                "limits": {"max_texts": s.max_texts, "max_chars": s.max_chars,
                           "max_body_bytes": s.max_body_bytes, "long": s.long},
                "batching": {"max_batch": s.max_batch, "max_wait_ms": s.max_wait_ms,
                             **self.batcher.stats}}

    # ------------------------------------------------------------------ checks
    def _check_count(self, n: int, what: str) -> None:
        if n == 0:
            raise RequestError(422, f"{what}: empty list")
        if n > self.settings.max_texts:
            raise RequestError(413, f"{what}: {n} items; this server takes at most "
                                    f"{self.settings.max_texts} per request")

    def _lengths(self, texts_a: Sequence[str], texts_b: Sequence[str] | None,
                 what: tuple[str, str] = ("texts", "texts_b")) -> list[bool]:
        """Which texts (pairs) do not fit in max_len; raises for them when long="reject", and
        for a text the tokenizer leaves nothing of (only control or zero-width characters)."""
        for texts, name in ((texts_a, what[0]), (texts_b, what[1])):
            if texts is None:
                continue
            for i, e in enumerate(self.tokenizer.encode_batch(texts, None, _UNBOUNDED)):
                if len(e) <= 2:  # [CLS] [SEP] and nothing between
                    raise RequestError(422, f"{name}[{i}]: empty text once normalized (only "
                                            "whitespace, control or zero-width characters)")
        counts = [len(e) for e in self.tokenizer.encode_batch(texts_a, texts_b, _UNBOUNDED)]
        over = [n > self.max_len for n in counts]
        if self.settings.long == "reject" and any(over):
            i = over.index(True)
            raise RequestError(413, f"text {i} is {counts[i]} tokens long ([CLS] and [SEP] "
                                    f"included), more than max_len {self.max_len}; this server "
                                    "rejects long texts rather than truncating them")
        return over

    # ------------------------------------------------------------------ /encode
    def prepare_encode(self, body: Any) -> tuple[list[dict], dict[str, Any]]:
        if not isinstance(body, dict):
            raise RequestError(422, "expected a JSON object {\"texts\": [...]}")
        unknown = sorted(set(body) - {"texts", "texts_b", "tokens", "task_id"})
        if unknown:
            raise RequestError(422, f"unknown field(s): {', '.join(unknown)} (known: texts, "
                                    "texts_b, tokens, task_id)")
        if "texts" not in body:
            raise RequestError(422, "missing field: texts (a list of strings)")
        texts, texts_b = body["texts"], body.get("texts_b")
        tokens = body.get("tokens", False)
        task_id = body.get("task_id", self.model.task_id)
        if not isinstance(texts, list):
            raise RequestError(422, "texts: expected a list of strings")
        self._check_count(len(texts), "texts")
        mc = self.settings.max_chars
        texts = [check_text(t, f"texts[{i}]", mc) for i, t in enumerate(texts)]
        if texts_b is not None:
            if not isinstance(texts_b, list) or len(texts_b) != len(texts):
                raise RequestError(422, f"texts_b: expected a list of {len(texts)} strings, one "
                                        "per text")
            texts_b = [check_text(t, f"texts_b[{i}]", mc) for i, t in enumerate(texts_b)]
        if not isinstance(tokens, bool):
            raise RequestError(422, "tokens: expected true or false")
        n_tasks = self.model.config.task_type_vocab_size if self.model.config.use_task_id else 1
        if not isinstance(task_id, int) or isinstance(task_id, bool) or \
                not 0 <= task_id < n_tasks:
            raise RequestError(422, f"task_id: expected an integer in [0, {n_tasks})")
        truncated = self._lengths(texts, texts_b)
        encs = self.tokenizer.encode_batch(texts, texts_b, self.max_len)
        features = [{"input_ids": e.input_ids, "sent_ids": e.sent_ids, "task_id": task_id}
                    for e in encs]
        return features, {"tokens": tokens, "truncated": truncated}

    @staticmethod
    def encode_response(results: list, meta: dict[str, Any]) -> dict[str, Any]:
        out = {"pooled": [r[0].tolist() for r in results],
               "lengths": [len(r[1]) for r in results], "truncated": meta["truncated"]}
        if meta["tokens"]:
            out["tokens"] = [r[1].tolist() for r in results]
        return out

    # ------------------------------------------------------------------ /predict
    def prepare_predict(self, body: Any) -> tuple[list[dict], dict[str, Any]]:
        ft = self.model.finetuned
        if ft is None:
            raise RequestError(404, f"{self.model.path} is an encoder without a fine-tuned "
                                    "head: /predict needs a directory written by fine-tuning "
                                    "(/encode works)")
        if not isinstance(body, dict) or set(body) != {"inputs"}:
            raise RequestError(422, "expected a JSON object with one field, inputs: "
                                    "{\"inputs\": [...]}")
        inputs = body["inputs"]
        if not isinstance(inputs, list):
            raise RequestError(422, "inputs: expected a list")
        self._check_count(len(inputs), "inputs")
        examples = to_examples(ft.task.name, inputs, self.settings.max_chars)
        meta: dict[str, Any] = {"examples": examples}
        if ft.task.takes_texts:
            texts_b = [ex.text_b for ex in examples] if examples[0].text_b is not None else None
            meta["truncated"] = self._lengths([ex.text_a for ex in examples], texts_b,
                                              ("inputs", "inputs (second text)"))
        opts = dataclasses.replace(ft.options, max_len=self.max_len)
        meta["options"] = opts
        # NER cuts long sentences into several features and reading comprehension uses
        # windows: every word is predicted, nothing is truncated.
        return ft.task.encode(examples, self.tokenizer, ft.labels, opts), meta

    def predict_response(self, results: list, features: list[dict],
                         meta: dict[str, Any]) -> dict[str, Any]:
        ft = self.model.finetuned
        preds = ft.task.decode(meta["examples"], features, results, ft.labels, meta["options"])
        out: dict[str, Any] = {"predictions": _plain(preds)}
        if "truncated" in meta:
            out["truncated"] = meta["truncated"]
        return out

    # ------------------------------------------------------------------ the worker
    def _run(self, kind: str, features: Sequence[dict]) -> list:
        if self.threads:
            torch.set_num_threads(self.threads)
        if kind == "predict":
            from ernie2.finetune.evaluate import run_model
            return run_model(self.model.finetuned, features, self.settings.max_batch,
                             self.tokenizer.pad_id)
        if kind == "encode":
            return self._encode(features)
        raise ValueError(f"unknown kind of work {kind!r}")

    def _encode(self, features: Sequence[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
        from ernie2.model.batch import (collate, length_batches, module_device, run_encoder,
                                        to_device)

        encoder, use_task = self.model.encoder, self.model.config.use_task_id
        device = module_device(encoder)
        out: list = [None] * len(features)
        with torch.inference_mode():
            for idx in length_batches([len(f["input_ids"]) for f in features],
                                      self.settings.max_batch):
                batch = to_device(collate([features[i] for i in idx], self.tokenizer.pad_id),
                                  device)
                pooled, encoded = run_encoder(encoder, batch,
                                              batch["task_id"] if use_task else None)
                # A model without a pooler: its [CLS] top-layer vector stands in.
                pooled = (encoded[:, 0] if pooled is None else pooled).float().cpu().numpy()
                encoded = encoded.float().cpu().numpy()
                for row, i in enumerate(idx):
                    out[i] = (pooled[row], encoded[row, :len(features[i]["input_ids"])])
        return out


def _plain(x: Any) -> Any:
    """Numpy scalars and arrays inside predictions as JSON-ready Python values."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    return x


# ---------------------------------------------------------------------- the HTTP side
async def read_json(request, max_bytes: int, timeout: float | None = None) -> Any:
    """The request body as JSON (Content-Type application/json), read no further than
    `max_bytes` and for no longer than `timeout` seconds."""
    ctype = request.headers.get("content-type", "")
    if ctype.partition(";")[0].strip().lower() != "application/json":
        raise RequestError(415, f"Content-Type must be application/json, got "
                                f"{ctype or 'none'}")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"bad Content-Length header {declared!r}")
        if int(declared) > max_bytes:
            raise RequestError(413, f"request body of {declared} bytes is over the limit of "
                                    f"{max_bytes}")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_bytes:
                    raise RequestError(413, f"request body is over the limit of {max_bytes} "
                                            "bytes")
    except TimeoutError:
        raise RequestError(408, f"request body not received within {timeout:g} s") from None
    if not body.strip():
        raise RequestError(400, "empty request body; expected JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"request body is not UTF-8 (bad byte at offset {exc.start})") \
            from None
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise RequestError(400, f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"malformed JSON at line {exc.lineno} column {exc.colno}: "
                                f"{exc.msg}") from None


def _json_response(payload: Any, status: int = 200):
    from starlette.responses import Response
    return Response(json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8"),
                    status_code=status, media_type="application/json")


def create_app(service: Service):
    """The FastAPI application; its lifespan starts and stops the batching worker.

    Long: the routes and error handlers, each a short nested function FastAPI needs defined
    against this app, one after another."""
    from fastapi.exceptions import RequestValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.batcher.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.batcher.stop)

    app = FastAPI(title="ernie2 inference", lifespan=lifespan,
                  description="POST /encode {\"texts\": [...]}; POST /predict {\"inputs\": "
                              "[...]}; GET /health")
    app.state.service = service
    key = service.settings.api_key

    @app.middleware("http")
    async def _require_key(request, call_next):
        if key is not None:
            given = request.headers.get("x-api-key") or request.headers.get(
                "authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), key.encode()):
                return _json_response({"error": "missing or wrong API key (send it as "
                                                "'Authorization: Bearer KEY' or 'X-API-Key: "
                                                "KEY')"}, 401)
        return await call_next(request)

    @app.exception_handler(RequestError)
    async def _request_error(request, exc: RequestError):
        return _json_response({"error": exc.message}, exc.status)

    @app.exception_handler(InputError)
    async def _input_error(request, exc: InputError):
        return _json_response({"error": str(exc)}, 413 if exc.too_large else 422)

    @app.exception_handler(Overloaded)
    async def _overloaded(request, exc: Overloaded):
        return _json_response({"error": f"server busy: {exc}; retry later"}, 429)

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):
        return _json_response({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        return _json_response({"error": "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())}, 422)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request, exc: ClientDisconnect):
        client = request.client
        logger.warning("client %s went away before sending its whole request to %s",
                       f"{client.host}:{client.port}" if client else "?", request.url.path)
        return _json_response({"error": "client disconnected"}, 400)  # read by no one

    @app.exception_handler(Exception)
    async def _internal_error(request, exc: Exception):
        logger.exception("request failed")
        return _json_response({"error": f"internal error ({type(exc).__name__})"}, 500)

    async def _run(kind: str, prepare, request: Request):
        body = await read_json(request, service.settings.max_body_bytes,
                               service.settings.body_timeout)
        features, meta = await run_in_threadpool(prepare, body)
        results = await asyncio.wrap_future(service.batcher.submit(kind, features))
        return features, meta, results

    @app.get("/health")
    async def health():
        return _json_response(service.info())

    @app.post("/encode")
    async def encode(request: Request):
        """Pooled vectors of texts (or pairs), and with "tokens": true the top layer's vector
        of every token ([CLS] ... [SEP])."""
        _, meta, results = await _run("encode", service.prepare_encode, request)
        return _json_response(await run_in_threadpool(service.encode_response, results, meta))

    @app.post("/predict")
    async def predict(request: Request):
        """The fine-tuned model's predictions: labels and probabilities, scores, tags or
        answer spans."""
        features, meta, results = await _run("predict", service.prepare_predict, request)
        return _json_response(service.predict_response(results, features, meta))

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _protocol(header_timeout: float):
    """uvicorn's h11 protocol, closing a connection that has not sent a request's headers within
    `header_timeout` seconds of connecting or of its previous response (slow clients)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def _arm(self) -> None:
            self.loop.call_later(header_timeout, self._headers_due, self.server_state
                                 .total_requests)

        def _headers_due(self, served: int) -> None:
            waiting = self.conn.their_state is h11.IDLE
            if waiting and served == self.server_state.total_requests \
                    and not self.transport.is_closing():
                logger.warning("closing the connection of %s: no request headers within %g s",
                               f"{self.client[0]}:{self.client[1]}" if self.client else "?", header_timeout)
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

    return Protocol


def _uvicorn_config(app, host: str, port: int, log_level: str):
    import uvicorn
    settings = app.state.service.settings
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          http=_protocol(settings.header_timeout))


def serve(model: LoadedModel, host: str = "127.0.0.1", port: int = 8881,
          settings: ServeSettings | None = None, threads: int | None = None,
          log_level: str = "info") -> None:
    """Run the server in the foreground until interrupted. The API key is settings.api_key,
    else the ERNIE2_API_KEY environment variable."""
    import uvicorn

    settings = settings or ServeSettings()
    if settings.api_key is None and os.environ.get(API_KEY_ENV):
        settings = dataclasses.replace(settings, api_key=os.environ[API_KEY_ENV])
    if not is_loopback(host) and settings.api_key is None:
        logger.warning("listening on %s: other machines can reach this server, which asks no "
                       "key; set one with --api-key or %s", host, API_KEY_ENV)
    app = create_app(Service(model, settings, threads))
    uvicorn.Server(_uvicorn_config(app, host, port, log_level)).run()


class BackgroundServer:
    """A uvicorn server on a thread (tests, notebooks): `with BackgroundServer(app) as s:
    Client(s.url)`. Port 0 picks a free port."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn

        self.server = uvicorn.Server(_uvicorn_config(app, host, port, log_level))
        self.thread = threading.Thread(target=self.server.run, name="ernie2-server", daemon=True)
        self.url = ""

    def __enter__(self) -> BackgroundServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


__all__ = ["BackgroundServer", "LONG_POLICIES", "RequestError", "ServeSettings", "Service", "create_app",
           "is_loopback", "read_json", "serve"]
