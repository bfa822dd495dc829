"""The inference server: every endpoint against the model run directly, batching of concurrent
clients, and bad requests answered 4xx while the server keeps serving."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from ernie2 import ErnieModel, ErnieTokenizer  # noqa: E402
from ernie2.inference import runtime  # noqa: E402
from ernie2.inference.batcher import Batcher, Overloaded  # noqa: E402
from ernie2.inference.client import Client, ServerError  # noqa: E402
from ernie2.inference.server import (BackgroundServer, ServeSettings, Service,  # noqa: E402
                                     create_app, is_loopback)
from test_serve_helpers import make_models  # noqa: E402

TEXTS = ["我爱北京天安门", "这个东西质量很好", "太差了", "abc 好"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("serve"))


def app_for(path, backend="torch", **settings):
    return create_app(Service(runtime.load(path, backend), ServeSettings(**settings)))


@pytest.fixture(scope="module")
def client(models):
    with TestClient(app_for(models["classify"], max_len=16, max_texts=8, max_body_bytes=4096,
                            max_chars=200)) as c:
        yield c


def reference_pooled(path, texts, task_id=1, max_len=16):
    """Each text alone through the encoder: no padding, no batching."""
    model = ErnieModel.from_pretrained(path).eval()
    tok = ErnieTokenizer.from_pretrained(path)
    pooled, tokens = [], []
    with torch.inference_mode():
        for t in texts:
            ids, sent = tok.encode(t, max_len=max_len)
            p, e = model(torch.from_numpy(ids[None]), torch.from_numpy(sent[None]),
                        torch.tensor([task_id]))
            pooled.append(p[0].numpy())
            tokens.append(e[0].numpy())
    return np.stack(pooled), tokens


# ---------------------------------------------------------------------- endpoints
def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200
    info = r.json()
    assert info["status"] == "ok" and info["task"] == "classify"
    assert info["labels"] == ["neg", "pos"] and info["max_len"] == 16


def test_encode_matches_the_model_run_text_by_text(client, models):
    r = client.post("/encode", json={"texts": TEXTS, "tokens": True})
    assert r.status_code == 200, r.text
    out = r.json()
    ref_pooled, ref_tokens = reference_pooled(models["classify"], TEXTS)
    np.testing.assert_allclose(np.array(out["pooled"]), ref_pooled, atol=1e-5)
    assert out["lengths"] == [len(t) for t in ref_tokens]
    for got, ref in zip(out["tokens"], ref_tokens):
        np.testing.assert_allclose(np.array(got), ref, atol=1e-5)
    assert "tokens" not in client.post("/encode", json={"texts": TEXTS[:1]}).json()


def test_encode_pairs_and_task_id(client, models):
    model = ErnieModel.from_pretrained(models["classify"]).eval()
    tok = ErnieTokenizer.from_pretrained(models["classify"])
    ids, sent = tok.encode("我爱北京", "天安门", max_len=16)
    with torch.inference_mode():
        ref = model(torch.from_numpy(ids[None]), torch.from_numpy(sent[None]),
                    torch.tensor([2]))[0][0].numpy()
    out = client.post("/encode", json={"texts": ["我爱北京"], "texts_b": ["天安门"],
                                       "task_id": 2}).json()
    np.testing.assert_allclose(out["pooled"][0], ref, atol=1e-5)


def test_predict_classify_matches_the_head_by_hand(client, models):
    from ernie2.finetune import FinetuneModel
    ft = FinetuneModel.load(models["classify"])
    ref_pooled, _ = reference_pooled(models["classify"], TEXTS)
    with torch.inference_mode():
        probs = torch.softmax(ft.head(torch.from_numpy(ref_pooled)), -1).numpy()
    r = client.post("/predict", json={"inputs": TEXTS})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    for p, ref in zip(preds, probs):
        assert p["label"] == ["neg", "pos"][int(ref.argmax())]
        np.testing.assert_allclose([p["probs"]["neg"], p["probs"]["pos"]], ref, atol=1e-5)
    assert r.json()["truncated"] == [False] * len(TEXTS)


def test_predict_ner_tags_every_token_and_encoder_has_no_predict(models):
    with TestClient(app_for(models["ner"], max_len=8)) as c:
        long_text = "我爱北京天安门" * 3  # 21 characters: cut into several features
        r = c.post("/predict", json={"inputs": [long_text, ["北京", "好"]]})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert preds[0]["tokens"] == list(long_text) and len(preds[0]["tags"]) == 21
        assert set(preds[0]["tags"]) <= {"O", "B-LOC", "I-LOC"}
        assert preds[1]["tokens"] == ["北京", "好"] and len(preds[1]["tags"]) == 2
    with TestClient(app_for(models["encoder"])) as c:
        r = c.post("/predict", json={"inputs": ["好"]})
        assert r.status_code == 404 and "fine-tuned" in r.json()["error"]
        assert c.post("/encode", json={"texts": ["好"]}).status_code == 200


def test_long_texts_truncate_or_reject(models):
    long_text = "好" * 40  # 42 tokens with [CLS] and [SEP]
    with TestClient(app_for(models["classify"], max_len=16)) as c:
        out = c.post("/encode", json={"texts": ["好", long_text]}).json()
        assert out["truncated"] == [False, True] and out["lengths"] == [3, 16]
        assert c.post("/predict", json={"inputs": [long_text]}).json()["truncated"] == [True]
    with TestClient(app_for(models["classify"], max_len=16, long="reject")) as c:
        for path, body in (("/encode", {"texts": ["好", long_text]}),
                           ("/predict", {"inputs": [long_text]})):
            r = c.post(path, json=body)
            assert r.status_code == 413
            assert "42 tokens" in r.json()["error"] and "max_len 16" in r.json()["error"]
        assert c.post("/encode", json={"texts": ["好" * 14]}).status_code == 200


# ---------------------------------------------------------------------- bad requests
BAD_REQUESTS = [
    # (path, raw body, expected status, words the error must contain)
    ("/encode", b'{"texts": ["a",', 400, "malformed JSON"),
    ("/encode", b"", 400, "empty request body"),
    ("/encode", b'{"texts": ["\xff\xfe bad"]}', 400, "not UTF-8"),
    ("/encode", b"[" * 1500 + b"]" * 1500, 400, "nested too deeply"),
    # within the interpreter's recursion limit, and with brackets inside strings not counted
    ("/encode", b'{"texts": [' + b"[" * 40 + b'"]]]"' + b"]" * 40 + b"]}", 400, "nested too deeply"),
    ("/encode", b'["a", "b"]', 422, "JSON object"),
    ("/encode", b'{"text": ["a"]}', 422, "unknown field"),
    ("/encode", b'{"texts": "abc"}', 422, "texts: expected a list"),
    ("/encode", b'{"texts": ["a", 3]}', 422, "texts[1]: expected a string"),
    ("/encode", b'{"texts": ["a"], "tokens": "yes"}', 422, "tokens"),
    ("/encode", b'{"texts": ["a"], "task_id": 99}', 422, "task_id"),
    ("/encode", b'{"texts": ["a"], "texts_b": ["b", "c"]}', 422, "texts_b"),
    ("/encode", b'{"texts": []}', 422, "empty list"),
    ("/encode", b'{"texts": ["ok", ""]}', 422, "texts[1]: empty text"),
    ("/encode", b'{"texts": ["   "]}', 422, "empty text"),
    ("/encode", b'{"texts": ["a\\ud800b"]}', 422, "unpaired surrogate"),
    ("/encode", json.dumps({"texts": ["a"] * 9}).encode(), 413, "at most 8"),
    ("/encode", json.dumps({"texts": ["a" * 201]}).encode(), 413, "201 characters"),
    ("/encode", json.dumps({"texts": ["a" * 5000]}).encode(), 413, "over the limit"),
    ("/predict", b'{"inputs": [["a", "b"]]}', 422, "takes one text"),
    ("/predict", b'{"inputs": [{"x": 1}]}', 422, "text_a"),
    ("/predict", b'{"inputs": [null]}', 422, "expected a string"),
    ("/predict", b'{"texts": ["a"]}', 422, "inputs"),
    ("/predict", b'{"inputs": "a"}', 422, "expected a list"),
]


@pytest.mark.parametrize("path,body,status,words", BAD_REQUESTS,
                         ids=[f"{p}-{w}" for p, _, _, w in BAD_REQUESTS])
def test_bad_requests_get_4xx_and_a_clear_message(client, path, body, status, words):
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert client.post("/encode", json={"texts": ["好"]}).status_code == 200


def test_unknown_route_and_method(client):
    assert client.get("/nothing").status_code == 404
    r = client.get("/encode")
    assert r.status_code == 405 and "error" in r.json()


# ---------------------------------------------------------------------- a real server
def _raw_post(url, path, body: bytes, chunked=False, headers=None):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    if chunked:
        conn.putrequest("POST", path)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        for i in range(0, len(body), 1000):
            part = body[i:i + 1000]
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
    else:
        conn.request("POST", path, body, headers or {"Content-Type": "application/json"})
    r = conn.getresponse()
    status, data = r.status, r.read()
    conn.close()
    return status, json.loads(data) if data else None


def test_real_server_batches_concurrent_clients_and_survives_abuse(models):
    app = app_for(models["classify"], max_len=16, max_batch=64, max_wait_ms=300,
                  max_body_bytes=4096)
    with BackgroundServer(app) as server:
        assert server.url.startswith("http://127.0.0.1:")
        c = Client(server.url)
        alone = c.encode(TEXTS).pooled
        results, errors = {}, []
        start = threading.Barrier(6)

        def worker(k):
            try:
                start.wait()
                results[k] = c.encode(TEXTS[k % 4:] + TEXTS[:k % 4]).pooled
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for k, got in results.items():  # same vectors, whatever the batch they rode in
            np.testing.assert_allclose(got, np.roll(alone, -(k % 4), axis=0), atol=1e-5)
        stats = c.health()["batching"]
        assert stats["most_jobs_in_a_batch"] > 1, stats

        # Abuse the real socket: chunked oversize body (no Content-Length), a lying
        # Content-Length, invalid UTF-8; then it still answers.
        status, body = _raw_post(server.url, "/encode", b'{"texts": ["' + b"a" * 6000 + b'"]}',
                                 chunked=True)
        assert status == 413 and "over the limit" in body["error"]
        status, body = _raw_post(server.url, "/encode", b'{"texts": ["\xc3\x28"]}')
        assert status == 400 and "UTF-8" in body["error"]
        with pytest.raises(ServerError) as err:
            c.encode([""])
        assert err.value.status == 422 and "empty text" in err.value.message
        with pytest.raises(ServerError) as err:
            c.predict([["a", "b"]])
        assert err.value.status == 422
        assert [p["label"] for p in c.predict(TEXTS)] == \
            [p["label"] for p in c.predict(list(reversed(TEXTS)))][::-1]


def test_cli_serve_binds_loopback_and_answers(models, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ernie2", "serve", "--model", str(models["encoder"]),
         "--port", "0", "--backend", "int8", "--threads", "1", "--log_level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url, lines = None, []
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"running on (http://[\d.]+:\d+)", line)
            url = m.group(1) if m else None
        assert url and url.startswith("http://127.0.0.1:"), "".join(lines)
        c = Client(url)
        assert c.health()["backend"] == "int8"
        assert c.encode(["好"]).pooled.shape == (1, 32)
    finally:
        proc.terminate()
        proc.wait(10)


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


# ---------------------------------------------------------------------- the batcher alone
def test_batcher_groups_jobs_and_survives_a_failing_batch():
    calls = []

    def run(kind, feats):
        calls.append((kind, len(feats)))
        if any(f.get("boom") for f in feats):
            raise RuntimeError("boom")
        return [f["x"] * 2 for f in feats]

    b = Batcher(run, max_batch=10, max_wait=0.2).start()
    try:
        futs = [b.submit("k", [{"x": i}, {"x": i + 10}]) for i in range(3)]
        assert [f.result(5) for f in futs] == [[0, 20], [2, 22], [4, 24]]
        assert calls == [("k", 6)]  # all three jobs in one call
        bad = b.submit("k", [{"x": 1, "boom": True}])
        with pytest.raises(RuntimeError, match="boom"):
            bad.result(5)
        assert b.submit("k", [{"x": 4}]).result(5) == [8]  # the worker lives on
    finally:
        b.stop()


def test_batcher_refuses_work_past_its_queue_limit():
    gate = threading.Event()

    def run(kind, feats):
        gate.wait(5)
        return [0] * len(feats)

    b = Batcher(run, max_batch=2, max_wait=0, max_queued=3).start()
    try:
        first = b.submit("k", [{}, {}])
        with pytest.raises(Overloaded):
            b.submit("k", [{}, {}])
        gate.set()
        assert first.result(5) == [0, 0]
        assert b.submit("k", [{}, {}]).result(5) == [0, 0]
    finally:
        b.stop()
    with pytest.raises(RuntimeError, match="not running"):
        b.submit("k", [{}])


def test_settings_are_checked():
    with pytest.raises(ValueError, match="long"):
        ServeSettings(long="drop")
    with pytest.raises(ValueError, match="max_batch"):
        ServeSettings(max_batch=0)
