"""The server against slow, vanishing and careless clients: header and body timeouts, one log
line per client that goes away, JSON content type required, texts empty once normalized, and
the optional API key."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from ernie2.inference import runtime  # noqa: E402
from ernie2.inference.client import Client, ServerError  # noqa: E402
from ernie2.inference.server import BackgroundServer, ServeSettings, Service, create_app  # noqa: E402
from test_serve_helpers import make_models  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("serve_faults"))


@pytest.fixture(scope="module")
def server(models):
    app = create_app(Service(runtime.load(models["classify"]),
                             ServeSettings(max_len=16, header_timeout=0.5, body_timeout=0.5)))
    with BackgroundServer(app) as s:
        yield s


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _post(url: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", path, body, headers)
    r = conn.getresponse()
    out = r.status, json.loads(r.read())
    conn.close()
    return out


def test_a_client_that_never_finishes_its_headers_is_cut_off(server):
    sock = _connect(server.url)
    sock.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-")
    t0 = time.monotonic()
    assert sock.recv(100) == b""  # closed by the server, not by our 10 s timeout
    assert time.monotonic() - t0 < 5
    sock.close()
    assert Client(server.url).encode(["好"]).pooled.shape == (1, 32)


def test_a_body_slower_than_the_timeout_gets_408(server):
    sock = _connect(server.url)
    sock.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 40\r\n\r\n{\"texts\": [")
    reply = http.client.HTTPResponse(sock)
    reply.begin()
    body = json.loads(reply.read())
    sock.close()
    assert reply.status == 408 and "not received within 0.5 s" in body["error"]


def test_clients_that_go_away_mid_body_cost_one_log_line_each(server, caplog):
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            sock = _connect(server.url)
            sock.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 1000\r\n\r\n{\"texts\": [\"a")
            time.sleep(0.02)
            sock.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sum(
                "went away" in r.getMessage() for r in caplog.records) < 20:
            time.sleep(0.05)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 20
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    t0 = time.monotonic()
    assert Client(server.url).encode(["好"]).pooled.shape == (1, 32)
    assert time.monotonic() - t0 < 5  # was 6 s after 1300 such clients


@pytest.mark.parametrize("ctype,status", [
    (None, 415), ("text/plain", 415), ("application/x-www-form-urlencoded", 415),
    ("application/json; charset=utf-8", 200), ("Application/JSON", 200)])
def test_json_content_type_is_required(server, ctype, status):
    headers = {"Content-Type": ctype} if ctype else {}
    got, body = _post(server.url, "/encode", b'{"texts": ["a"]}', headers)
    assert got == status, body
    if status == 415:
        assert "Content-Type must be application/json, got " in body["error"]


@pytest.mark.parametrize("text", ["\u200b\u200c\u200d", "\x01\x02\x7f", "\ufeff \u2060"])
def test_text_empty_once_normalized_gets_422(server, text):
    c = Client(server.url)
    with pytest.raises(ServerError) as err:
        c.encode(["fine", text])
    assert err.value.status == 422 and "texts[1]: empty text once normalized" in \
        err.value.message
    with pytest.raises(ServerError) as err:
        c.predict([text])
    assert err.value.status == 422 and "inputs[0]: empty text once normalized" in \
        err.value.message


def test_api_key_is_required_when_set(models):
    app = create_app(Service(runtime.load(models["encoder"]),
                             ServeSettings(max_len=16, api_key="s3cret")))
    with TestClient(app) as c:
        body = {"texts": ["好"]}
        assert c.post("/encode", json=body).status_code == 401
        assert c.get("/health").status_code == 401
        r = c.post("/encode", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "API key" in r.json()["error"]
        assert c.post("/encode", json=body,
                      headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/encode", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert "s3cret" not in repr(app.state.service.settings)


def test_serve_takes_the_key_from_the_environment(models, monkeypatch, caplog):
    import uvicorn

    from ernie2.inference.server import serve

    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: seen.update(
        key=self.config.app.state.service.settings.api_key))
    model = runtime.load(models["encoder"])
    with caplog.at_level(logging.WARNING):
        serve(model, host="0.0.0.0", settings=ServeSettings(max_len=16))
    assert seen["key"] is None and "--api-key" in caplog.text
    monkeypatch.setenv("ERNIE2_API_KEY", "from-env")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        serve(model, host="0.0.0.0", settings=ServeSettings(max_len=16))
    assert seen["key"] == "from-env" and "asks no key" not in caplog.text
