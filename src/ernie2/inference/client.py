"""A small Python client of the inference server, on the standard library's urllib:
`Client("http://127.0.0.1:8881").encode(["text", ...])`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class ServerError(RuntimeError):
    """The server answered with an error status; `status` is the HTTP code, `message` its text."""

    def __init__(self, status: int, message: str, url: str):
        super().__init__(f"{url}: HTTP {status}: {message}")
        self.status, self.message, self.url = status, message, url


@dataclass
class Encoded:
    pooled: np.ndarray  # [N, H] float32
    lengths: list[int]  # tokens per text, [CLS] and [SEP] included
    truncated: list[bool]
    tokens: list[np.ndarray] | None = None  # per text [length, H], when asked for


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8881", timeout: float = 60.0,
                 api_key: str | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.api_key = api_key  # sent as "Authorization: Bearer KEY" when the server wants one

    def _call(self, path: str, payload: Any | None = None) -> Any:
        data = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers,
                                     method="GET" if data is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", errors="replace")
            try:
                message = json.loads(raw).get("error", raw)
            except (ValueError, AttributeError):
                message = raw
            raise ServerError(exc.code, message, self.url + path) from None

    def health(self) -> dict[str, Any]:
        return self._call("/health")

    def encode(self, texts: Sequence[str], texts_b: Sequence[str] | None = None,
               tokens: bool = False, task_id: int | None = None) -> Encoded:
        payload: dict[str, Any] = {"texts": list(texts), "tokens": tokens}
        if texts_b is not None:
            payload["texts_b"] = list(texts_b)
        if task_id is not None:
            payload["task_id"] = task_id
        out = self._call("/encode", payload)
        toks = [np.asarray(t, dtype=np.float32) for t in out["tokens"]] if tokens else None
        return Encoded(np.asarray(out["pooled"], dtype=np.float32), out["lengths"],
                       out["truncated"], toks)

    def predict(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Predictions of a fine-tuned model (see `inference.inputs` for each task's inputs)."""
        return self._call("/predict", {"inputs": list(inputs)})["predictions"]


__all__ = ["Client", "Encoded", "ServerError"]
