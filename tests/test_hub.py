"""Models by name: fetched from a local HTTP server, resumed, verified, unpacked safely, cached."""

import hashlib
import io
import json
import os
import socket
import sys
import tarfile
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from ernie2 import ErnieModel, ErnieTokenizer
from ernie2.cli import main as cli_main
from ernie2 import hub
from ernie2.model.checkpoint import convert
from ernie2.model.paddle_io import lodtensor_bytes, write_lodtensor, write_pdparams

V, H, I, L, P = 40, 32, 37, 2, 64  # vocab, hidden, intermediate, layers, positions
TOKENS = (["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"] + list("的一是在不了有和人这中大为上个")
          + [f"w{i}" for i in range(V - 20)])
PADDLE_CONFIG = {"attention_probs_dropout_prob": 0.1, "hidden_act": "relu",
                 "hidden_dropout_prob": 0.1, "hidden_size": H, "initializer_range": 0.02,
                 "intermediate_size": I, "max_position_embeddings": P, "num_attention_heads": 4,
                 "num_hidden_layers": L, "type_vocab_size": 2, "vocab_size": V}


# ---------------------------------------------------------------------- test checkpoints
def static_arrays(seed=0):
    """Every variable of a static params/ directory, in the static names of FORMATS.md."""
    rng = np.random.default_rng(seed)
    r = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    a = {"word_embedding": r(V, H), "pos_embedding": r(P, H), "sent_embedding": r(2, H),
         "pre_encoder_layer_norm_scale": r(H), "pre_encoder_layer_norm_bias": r(H),
         "pooled_fc.w_0": r(H, H), "pooled_fc.b_0": r(H)}
    for i in range(L):
        p = f"encoder_layer_{i}_"
        for part in ("query", "key", "value", "output"):
            a[f"{p}multi_head_att_{part}_fc.w_0"] = r(H, H)
            a[f"{p}multi_head_att_{part}_fc.b_0"] = r(H)
        for ln in ("post_att", "post_ffn"):
            a[f"{p}{ln}_layer_norm_scale"] = r(H)
            a[f"{p}{ln}_layer_norm_bias"] = r(H)
        a[f"{p}ffn_fc_0.w_0"], a[f"{p}ffn_fc_0.b_0"] = r(H, I), r(I)
        a[f"{p}ffn_fc_1.w_0"], a[f"{p}ffn_fc_1.b_0"] = r(I, H), r(H)
    return a


def dygraph_arrays(static):
    """The same weights under the dygraph (saved_weights.pdparams) names."""
    out = {"word_emb.weight": static["word_embedding"], "pos_emb.weight": static["pos_embedding"],
           "sent_emb.weight": static["sent_embedding"],
           "ln.weight": static["pre_encoder_layer_norm_scale"],
           "ln.bias": static["pre_encoder_layer_norm_bias"],
           "pooler.weight": static["pooled_fc.w_0"], "pooler.bias": static["pooled_fc.b_0"]}
    for i in range(L):
        s, d = f"encoder_layer_{i}_", f"encoder_stack.block.{i}."
        for part, short in (("query", "q"), ("key", "k"), ("value", "v"), ("output", "o")):
            out[f"{d}attn.{short}.weight"] = static[f"{s}multi_head_att_{part}_fc.w_0"]
            out[f"{d}attn.{short}.bias"] = static[f"{s}multi_head_att_{part}_fc.b_0"]
        for ln, short in (("post_att", "ln1"), ("post_ffn", "ln2")):
            out[f"{d}{short}.weight"] = static[f"{s}{ln}_layer_norm_scale"]
            out[f"{d}{short}.bias"] = static[f"{s}{ln}_layer_norm_bias"]
        for fc, short in (("ffn_fc_0", "i"), ("ffn_fc_1", "o")):
            out[f"{d}ffn.{short}.weight"] = static[f"{s}{fc}.w_0"]
            out[f"{d}ffn.{short}.bias"] = static[f"{s}{fc}.b_0"]
    return out


def assert_matches(model, static):
    """Our model against the Paddle arrays, mapped by hand (Paddle Linear weights are [in, out])."""
    sd = model.state_dict()
    np.testing.assert_array_equal(sd["embeddings.word_embeddings.weight"].numpy(),
                                  static["word_embedding"])
    np.testing.assert_array_equal(sd["embeddings.layer_norm.weight"].numpy(),
                                  static["pre_encoder_layer_norm_scale"])
    for i in range(L):
        np.testing.assert_array_equal(sd[f"layers.{i}.attention.query.weight"].numpy(),
                                      static[f"encoder_layer_{i}_multi_head_att_query_fc.w_0"].T)
        np.testing.assert_array_equal(sd[f"layers.{i}.ffn_in.weight"].numpy(),
                                      static[f"encoder_layer_{i}_ffn_fc_0.w_0"].T)
        np.testing.assert_array_equal(sd[f"layers.{i}.ffn_norm.bias"].numpy(),
                                      static[f"encoder_layer_{i}_post_ffn_layer_norm_bias"])
    np.testing.assert_array_equal(sd["pooler.dense.bias"].numpy(), static["pooled_fc.b_0"])


def vocab_text(tab=True):
    return "".join(f"{t}\t{i}\n" if tab else f"{t}\n" for i, t in enumerate(TOKENS))


def static_dir(root: Path, static) -> Path:
    """The layout of the static archives: params/ (one LoDTensor file per variable),
    ernie_config.json and vocab.txt side by side."""
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in static.items():
        write_lodtensor(root / "params" / name, arr)
    (root / "ernie_config.json").write_text(json.dumps(PADDLE_CONFIG))
    (root / "vocab.txt").write_text(vocab_text(tab=True), encoding="utf-8")
    return root


def dygraph_dir(root: Path, static) -> Path:
    """The layout of the dygraph archives: ernie_config.json, saved_weights.pdparams, vocab.txt."""
    root.mkdir(parents=True, exist_ok=True)
    write_pdparams(root / "saved_weights.pdparams", dygraph_arrays(static))
    (root / "ernie_config.json").write_text(json.dumps(PADDLE_CONFIG))
    (root / "vocab.txt").write_text(vocab_text(tab=False), encoding="utf-8")
    return root


def tar_gz(src: Path, prefix: str = "") -> bytes:
    """`src`'s contents as a .tar.gz, at the top level or under `prefix/`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for p in sorted(src.rglob("*")):
            tf.add(p, arcname=str(Path(prefix) / p.relative_to(src)) if prefix
                   else str(p.relative_to(src)), recursive=False)
    return buf.getvalue()


# ---------------------------------------------------------------------- the server
class Server:
    """http.server on 127.0.0.1 (port 0) serving `files`; it can cut a body in half the first
    time (`drop_first`) and honours HTTP Range unless `ranges` is False."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []
        self.drop_first: set[str] = set()
        self.ranges = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.log.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and server.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.drop_first:
                    server.drop_first.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def gets(self, path):
        return [rng for p, rng in self.log if p == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "cache"
    monkeypatch.setenv("ERNIE2_HOME", str(h))
    for var in ("ERNIE2_OFFLINE", "ERNIE2_MIRROR", "ERNIE2_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    return h


@pytest.fixture(scope="module")
def static():
    return static_arrays()


def model_info(name, *sources):
    return hub.ModelInfo(name, "zh", L, H, 4, V, "a test model", tuple(sources))


def archive_model(server, tmp_path, static, name="tiny-static", path="/m/tiny.tar.gz",
                  layout="static", prefix="", **download):
    src = (static_dir if layout == "static" else dygraph_dir)(tmp_path / f"src-{name}", static)
    server.files[path] = tar_gz(src, prefix)
    return model_info(name, hub.ArchiveSource(hub.Download(server.base + path, **download)))


def leftovers(home: Path):
    """Everything in the cache but lock files."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")
                  if p.is_file() and p.suffix != ".lock")


# ---------------------------------------------------------------------- tests
def test_first_load_downloads_converts_and_matches_then_no_network(server, home, tmp_path,
                                                                  static, monkeypatch):
    info = archive_model(server, tmp_path, static)
    data = server.files["/m/tiny.tar.gz"]
    info = model_info(info.name, hub.ArchiveSource(hub.Download(
        server.base + "/m/tiny.tar.gz", size=len(data), md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest())))
    with hub.registered(info):
        model = ErnieModel.from_pretrained("tiny-static")
        assert_matches(model, static)
        assert len(server.gets("/m/tiny.tar.gz")) == 1
        cached = home / "models" / "tiny-static"
        assert sorted(p.name for p in cached.iterdir()) == [
            "config.json", "model.safetensors", "source.json", "vocab.txt"]
        record = json.loads((cached / "source.json").read_text())
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["format"] == "static"
        # converted once: the archive is gone, nothing else is left in the cache
        assert leftovers(home) == [f"models/tiny-static/{n}" for n in
                                   ("config.json", "model.safetensors", "source.json",
                                    "vocab.txt")]

        # second load: from the cache, no request, even when the server is gone and offline
        server.close()
        monkeypatch.setenv("ERNIE2_OFFLINE", "1")
        again = ErnieModel.from_pretrained("tiny-static")
        assert_matches(again, static)
        tok = ErnieTokenizer.from_pretrained("tiny-static")
        assert tok.vocab == {t: i for i, t in enumerate(TOKENS)}
        assert tok.convert_tokens_to_ids(["的", "[SEP]"]) == [5, 2]
        assert len(server.gets("/m/tiny.tar.gz")) == 1
        assert hub.cached_path("tiny-static") == cached


def test_dygraph_archive_with_top_directory(server, home, tmp_path, static):
    info = archive_model(server, tmp_path, static, name="tiny-dy", path="/dy/model.tar.gz",
                         layout="dygraph", prefix="ernie1.0_dir")
    with hub.registered(info):
        path = hub.resolve("tiny-dy", convert=convert)
        assert_matches(ErnieModel.from_pretrained(path), static)
        assert json.loads((path / "source.json").read_text())["format"] == "pdparams"
        assert ErnieTokenizer.from_pretrained("tiny-dy").vocab["[MASK]"] == 3


def test_wenxin_params_file_is_read_as_pdparams(server, home, tmp_path, static):
    """wenxin checkpoints keep `params` as one paddle.save file beside ernie_config.json."""
    src = tmp_path / "wenxin"
    src.mkdir()
    write_pdparams(src / "params", static)
    (src / "ernie_config.json").write_text(json.dumps(PADDLE_CONFIG))
    (src / "vocab.txt").write_text(vocab_text(), encoding="utf-8")
    server.files["/wenxin-models/x_open.tgz"] = tar_gz(src)
    info = model_info("tiny-wenxin", hub.ArchiveSource(
        hub.Download(server.base + "/wenxin-models/x_open.tgz")))
    with hub.registered(info):
        assert_matches(ErnieModel.from_pretrained("tiny-wenxin"), static)


@pytest.mark.parametrize("ranges", [True, False], ids=["range-resume", "restart"])
def test_interrupted_download_is_recovered(server, home, tmp_path, static, ranges):
    info = archive_model(server, tmp_path, static)
    server.drop_first.add("/m/tiny.tar.gz")
    server.ranges = ranges
    size = len(server.files["/m/tiny.tar.gz"])
    with hub.registered(info):
        assert_matches(ErnieModel.from_pretrained("tiny-static"), static)
    gets = server.gets("/m/tiny.tar.gz")
    assert len(gets) == 2
    # the second request asks for the rest; a server without ranges sends it all again
    assert gets == [None, f"bytes={size // 2}-"]
    assert not list(home.rglob("*.part"))


def test_partial_file_from_an_earlier_run_is_resumed(server, home, tmp_path, static):
    info = archive_model(server, tmp_path, static)
    data = server.files["/m/tiny.tar.gz"]
    part = home / "downloads" / "tiny-static" / "tiny.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    with hub.registered(info):
        assert_matches(ErnieModel.from_pretrained("tiny-static"), static)
    assert server.gets("/m/tiny.tar.gz") == ["bytes=1000-"]


def test_corrupt_partial_file_fails_checksum_then_nothing_is_left(server, home, tmp_path,
                                                                 static):
    info = archive_model(server, tmp_path, static)
    data = server.files["/m/tiny.tar.gz"]
    part = home / "downloads" / "tiny-static" / "tiny.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # garbage from an earlier run: resuming it cannot verify
    info = model_info(info.name, hub.ArchiveSource(hub.Download(
        server.base + "/m/tiny.tar.gz", sha256=hashlib.sha256(data).hexdigest())))
    with hub.registered(info), pytest.raises(hub.ModelUnavailableError, match="sha256"):
        hub.resolve("tiny-static", convert=convert, retries=0)
    assert leftovers(home) == []
    # the next load starts clean and succeeds
    with hub.registered(info):
        assert_matches(ErnieModel.from_pretrained("tiny-static"), static)


@pytest.mark.parametrize("kind", ["sha256", "md5", "size"])
def test_checksum_mismatch_is_refused_and_nothing_broken_is_left(server, home, tmp_path,
                                                                 static, kind):
    archive_model(server, tmp_path, static)
    data = server.files["/m/tiny.tar.gz"]
    wrong = {"sha256": {"sha256": hashlib.sha256(b"other").hexdigest()},
             "md5": {"md5": hashlib.md5(b"other").hexdigest()},
             "size": {"size": len(data) + 1}}[kind]
    info = model_info("tiny-static", hub.ArchiveSource(
        hub.Download(server.base + "/m/tiny.tar.gz", **wrong)))
    with hub.registered(info), pytest.raises(hub.ModelUnavailableError) as err:
        ErnieModel.from_pretrained("tiny-static")
    assert kind in str(err.value) and "tiny.tar.gz" in str(err.value)
    assert leftovers(home) == []
    assert not (home / "models" / "tiny-static").exists()


def _evil_archive(kind: str, tmp_path: Path, static) -> bytes:
    src = static_dir(tmp_path / f"evil-src-{kind}", static)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for p in sorted(src.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(src)), recursive=False)
        if kind in ("dotdot", "absolute"):
            payload = b"escaped"
            ti = tarfile.TarInfo("../escaped.txt" if kind == "dotdot"
                                 else str(tmp_path / "escaped.txt"))
            ti.size = len(payload)
            tf.addfile(ti, io.BytesIO(payload))
        else:
            ti = tarfile.TarInfo("params/link")
            ti.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            ti.linkname = "/etc/passwd" if kind == "symlink" else "../../outside"
            tf.addfile(ti)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_unsafe_archive_is_refused(server, home, tmp_path, static, kind):
    server.files["/m/evil.tar.gz"] = _evil_archive(kind, tmp_path, static)
    info = model_info("evil", hub.ArchiveSource(hub.Download(server.base + "/m/evil.tar.gz")))
    why = "is a link" if kind.endswith("link") else "points outside"
    with hub.registered(info), pytest.raises(hub.ModelUnavailableError,
                                             match=f"refused: member .* {why}"):
        hub.resolve("evil", convert=convert)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (home / "escaped.txt").exists() and not (home / "tmp" / "escaped.txt").exists()
    assert leftovers(home) == []  # the refused download is not kept


def test_offline_mode_never_touches_the_network(server, home, tmp_path, static, monkeypatch):
    calls = []
    fake = types.ModuleType("huggingface_hub")

    def snapshot_download(repo_id, **kw):
        calls.append(kw)
        raise FileNotFoundError("not in the cache")

    fake.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    archive_model(server, tmp_path, static)
    info = model_info("tiny-static",
                      hub.ArchiveSource(hub.Download(server.base + "/m/tiny.tar.gz")),
                      hub.HubSource("someone/tiny"))
    monkeypatch.setenv("ERNIE2_OFFLINE", "1")
    with hub.registered(info), pytest.raises(hub.ModelUnavailableError) as err:
        ErnieModel.from_pretrained("tiny-static")
    msg = str(err.value)
    assert server.log == []
    assert calls and all(kw.get("local_files_only") is True for kw in calls)
    assert "ERNIE2_OFFLINE=1" in msg
    # says how to place the files by hand: the archive name and where it goes
    assert str(home / "downloads" / "tiny-static" / "tiny.tar.gz") in msg
    assert str(home / "manual" / "tiny-static") in msg


def test_files_placed_by_hand_load_offline(server, home, tmp_path, static, monkeypatch):
    archive_model(server, tmp_path, static)
    info = model_info("tiny-static",
                      hub.ArchiveSource(hub.Download("https://ernie.invalid/tiny.tar.gz")))
    monkeypatch.setenv("ERNIE2_OFFLINE", "1")
    # an archive saved where the error message says
    placed = home / "downloads" / "tiny-static" / "tiny.tar.gz"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(server.files["/m/tiny.tar.gz"])
    with hub.registered(info):
        assert_matches(ErnieModel.from_pretrained("tiny-static"), static)
    assert placed.exists()  # a file the user placed is not deleted
    # a checkpoint unpacked by hand into manual/<name>
    info2 = model_info("tiny-manual",
                       hub.ArchiveSource(hub.Download("https://ernie.invalid/x.tar.gz")))
    dygraph_dir(home / "manual" / "tiny-manual" / "unpacked_top_dir", static)
    with hub.registered(info2):
        assert_matches(ErnieModel.from_pretrained("tiny-manual"), static)
    assert server.log == []


def test_unreachable_source_says_what_was_tried(home, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ERNIE_x.tar.gz"
    info = model_info("tiny-gone", hub.ArchiveSource(hub.Download(url)))
    with hub.registered(info), pytest.raises(hub.ModelUnavailableError) as err:
        hub.resolve("tiny-gone", convert=convert, retries=0)
    msg = str(err.value)
    assert url in msg and "cannot connect" in msg
    assert f"save it as {home / 'downloads' / 'tiny-gone' / 'ERNIE_x.tar.gz'}" in msg
    assert "tar xzf ERNIE_x.tar.gz" in msg and str(home / "manual" / "tiny-gone") in msg


def test_http_error_falls_through_to_the_next_source(server, home, tmp_path, static):
    archive_model(server, tmp_path, static)
    info = model_info("tiny-static",
                      hub.ArchiveSource(hub.Download(server.base + "/missing.tar.gz")),
                      hub.ArchiveSource(hub.Download(server.base + "/m/tiny.tar.gz")))
    with hub.registered(info):
        assert_matches(ErnieModel.from_pretrained("tiny-static"), static)
    assert server.gets("/missing.tar.gz") == [None]  # a 404 is not retried


def test_unknown_name_gives_a_clear_error(home):
    with pytest.raises(FileNotFoundError, match="nor a known model name") as err:
        ErnieModel.from_pretrained("no-such-model")
    assert "ernie-1.0" in str(err.value) and "ERNIE2_REGISTRY" in str(err.value)
    with pytest.raises(hub.UnknownModelError):
        ErnieTokenizer.from_pretrained("no-such-model")
    assert not home.exists()  # nothing created for a name we do not know


def test_aliases_resolve_to_the_table_entry():
    assert hub.get_model("ernie-1.0-base-zh").name == "ernie-1.0"
    assert hub.get_model("ERNIE-2.0-BASE-EN").name == "ernie-2.0-en"


def test_builtin_table_is_complete():
    names = set(hub.known_models())
    assert {"ernie-1.0", "ernie-1.0-max-len-512", "ernie-tiny", "ernie-2.0-en",
            "ernie-2.0-large-en", "ernie-2.0-base-zh", "ernie-2.0-large-zh"} <= names
    for info in hub.iter_models():
        assert info.sources, info.name
        for src in info.sources:
            if isinstance(src, hub.ArchiveSource):
                assert src.download.url.startswith(("https://", "http://"))
                assert src.download.filename.endswith((".tar.gz", ".tgz"))
            if isinstance(src, hub.FilesSource):  # PaddleNLP ships no config: ours must parse
                from ernie2.model.config import ErnieConfig
                cfg = ErnieConfig.from_dict(src.config)
                assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (
                    info.layers, info.hidden, info.vocab_size)
    hf = {s.repo_id for i in hub.iter_models() for s in i.sources
          if isinstance(s, hub.HubSource)}
    assert {"nghuyong/ernie-1.0-base-zh", "nghuyong/ernie-2.0-base-en",
            "nghuyong/ernie-2.0-large-en"} <= hf


def test_concurrent_loads_download_once(server, home, tmp_path, static):
    info = archive_model(server, tmp_path, static)
    results, errors = [], []

    def load():
        try:
            results.append(hub.resolve("tiny-static", convert=convert))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with hub.registered(info):
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(set(results)) == 1
    assert len(server.gets("/m/tiny.tar.gz")) == 1
    assert_matches(ErnieModel.from_pretrained(results[0]), static)


def test_paddlenlp_files_through_a_mirror(server, home, tmp_path, static, monkeypatch):
    """Loose PaddleNLP files (model_state.pdparams in PaddleNLP names, vocab.txt, no config),
    fetched from a mirror that replaces the published host."""
    names = {"word_embedding": "ernie.embeddings.word_embeddings.weight",
             "pos_embedding": "ernie.embeddings.position_embeddings.weight",
             "sent_embedding": "ernie.embeddings.token_type_embeddings.weight",
             "pre_encoder_layer_norm_scale": "ernie.embeddings.layer_norm.weight",
             "pre_encoder_layer_norm_bias": "ernie.embeddings.layer_norm.bias",
             "pooled_fc.w_0": "ernie.pooler.dense.weight",
             "pooled_fc.b_0": "ernie.pooler.dense.bias"}
    for i in range(L):
        s, d = f"encoder_layer_{i}_", f"ernie.encoder.layers.{i}."
        for part, short in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"),
                            ("output", "out_proj")):
            names[f"{s}multi_head_att_{part}_fc.w_0"] = f"{d}self_attn.{short}.weight"
            names[f"{s}multi_head_att_{part}_fc.b_0"] = f"{d}self_attn.{short}.bias"
        for ln, short in (("post_att", "norm1"), ("post_ffn", "norm2")):
            names[f"{s}{ln}_layer_norm_scale"] = f"{d}{short}.weight"
            names[f"{s}{ln}_layer_norm_bias"] = f"{d}{short}.bias"
        for fc, short in (("ffn_fc_0", "linear1"), ("ffn_fc_1", "linear2")):
            names[f"{s}{fc}.w_0"] = f"{d}{short}.weight"
            names[f"{s}{fc}.b_0"] = f"{d}{short}.bias"
    buf = tmp_path / "state.pdparams"
    write_pdparams(buf, {names[k]: v for k, v in static.items()})
    server.files["/paddlenlp/models/ernie/tiny.pdparams"] = buf.read_bytes()
    server.files["/paddlenlp/models/ernie/vocab.txt"] = vocab_text().encode()
    info = model_info("tiny-nlp", hub.FilesSource(
        (("model_state.pdparams", hub.Download("https://bj.bcebos.invalid/paddlenlp/models/"
                                               "ernie/tiny.pdparams")),
         ("vocab.txt", hub.Download("https://bj.bcebos.invalid/paddlenlp/models/ernie/"
                                    "vocab.txt"))),
        config=PADDLE_CONFIG))
    monkeypatch.setenv("ERNIE2_MIRROR", server.base + "/")
    with hub.registered(info):
        assert_matches(ErnieModel.from_pretrained("tiny-nlp"), static)
    assert [p for p, _ in server.log] == ["/paddlenlp/models/ernie/tiny.pdparams",
                                         "/paddlenlp/models/ernie/vocab.txt"]


def test_registry_file_and_models_command(server, home, tmp_path, static, monkeypatch,
                                          capsys):
    archive_model(server, tmp_path, static)
    data = server.files["/m/tiny.tar.gz"]
    reg = tmp_path / "models.json"
    reg.write_text(json.dumps({"models": [{
        "name": "tiny-json", "language": "zh", "layers": L, "hidden": H, "heads": 4,
        "vocab_size": V, "summary": "tiny test model from a registry file",
        "sources": [{"archive": "https://ernie.invalid/m/tiny.tar.gz",
                     "sha256": hashlib.sha256(data).hexdigest()}]}]}))
    monkeypatch.setenv("ERNIE2_REGISTRY", str(reg))
    monkeypatch.setenv("ERNIE2_MIRROR", server.base)

    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("tiny-json "))
    assert line.split()[1:7] == ["zh", str(L), str(H), "4", str(V), "no"]
    assert "ernie-2.0-large-en" in out

    assert cli_main(["models", "--download", "tiny-json"]) == 0
    assert str(home / "models" / "tiny-json") in capsys.readouterr().out
    assert cli_main(["models", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    row = next(r for r in table["models"] if r["name"] == "tiny-json")
    assert row["cached"] == str(home / "models" / "tiny-json")
    assert cli_main(["models", "--path", "tiny-json"]) == 0
    assert capsys.readouterr().out.strip() == str(home / "models" / "tiny-json")
    assert_matches(ErnieModel.from_pretrained("tiny-json"), static)

    reg.write_text('{"models": [{"name": "broken"}]}')
    assert cli_main(["models"]) == 1
    err = capsys.readouterr().err
    assert str(reg) in err and "missing" in err and "sources" in err


def test_hugging_face_source_through_huggingface_hub(home, tmp_path, monkeypatch):
    """A converted copy on the Hub (fetched by a stand-in for huggingface_hub that writes what
    transformers saves) loads to the same weights as the transformers model."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ref = transformers.ErnieModel(transformers.ErnieConfig(
        vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=4,
        intermediate_size=I, max_position_embeddings=P, layer_norm_eps=1e-5)).eval()
    calls = []
    fake = types.ModuleType("huggingface_hub")

    def snapshot_download(repo_id, local_dir=None, local_files_only=False, **kw):
        calls.append((repo_id, local_files_only))
        if local_files_only:
            raise FileNotFoundError("not cached")
        ref.save_pretrained(local_dir)
        Path(local_dir, "vocab.txt").write_text(vocab_text(tab=False), encoding="utf-8")
        return local_dir

    fake.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    with hub.registered(model_info("tiny-hf", hub.HubSource("someone/tiny-ernie"))):
        ours = ErnieModel.from_pretrained("tiny-hf").eval()
    assert calls == [("someone/tiny-ernie", True), ("someone/tiny-ernie", False)]
    ids = torch.tensor([[1, 7, 9, 12, 2, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        _, got = ours(ids, attention_mask=mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_cache_home_defaults_under_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("ERNIE2_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_home() == tmp_path / "xdg" / "ernie2"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert hub.cache_home() == Path.home() / ".cache" / "ernie2"
    monkeypatch.setenv("ERNIE2_HOME", str(tmp_path / "mine"))
    assert hub.cache_home() == tmp_path / "mine"


def test_mirror_replaces_the_published_host():
    url = "https://ernie.bj.bcebos.com/ERNIE_1.0_max-len-512.tar.gz"
    assert hub.mirrored(url, "http://10.0.0.1:8080/ernie/") == \
        "http://10.0.0.1:8080/ernie/ERNIE_1.0_max-len-512.tar.gz"
    assert hub.mirrored(url, None) == url


def test_safe_extract_accepts_a_plain_archive(tmp_path, static):
    src = static_dir(tmp_path / "src", static)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz(src, "top"))
    hub.safe_extract(archive, tmp_path / "out")
    root = hub.find_checkpoint_root(tmp_path / "out")
    assert root == tmp_path / "out" / "top"
    assert (root / "params" / "word_embedding").read_bytes() == \
        lodtensor_bytes(static["word_embedding"])
    (tmp_path / "bad.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(hub.ArchiveError, match="not a readable tar archive"):
        hub.safe_extract(tmp_path / "bad.tar.gz", tmp_path / "out2")


def test_mirror_may_be_a_local_directory(home, tmp_path, static, monkeypatch):
    src = static_dir(tmp_path / "src", static)
    mirror = tmp_path / "mirror"
    (mirror / "sub").mkdir(parents=True)
    (mirror / "sub" / "tiny.tar.gz").write_bytes(tar_gz(src))
    info = model_info("tiny-file", hub.ArchiveSource(
        hub.Download("https://ernie.invalid/sub/tiny.tar.gz")))
    monkeypatch.setenv("ERNIE2_MIRROR", mirror.as_uri())
    with hub.registered(info):
        assert_matches(ErnieModel.from_pretrained("tiny-file"), static)


def test_another_process_waits_for_the_lock_then_uses_one_download(server, home, tmp_path,
                                                                  static):
    """A second process blocks on the model's lock file while the first holds it."""
    import queue
    import subprocess

    fcntl = pytest.importorskip("fcntl")
    archive_model(server, tmp_path, static)
    reg = tmp_path / "models.json"
    reg.write_text(json.dumps([{"name": "tiny-proc", "language": "zh", "layers": L, "hidden": H,
                                "heads": 4, "vocab_size": V,
                                "sources": [{"archive": server.base + "/m/tiny.tar.gz"}]}]))
    lock = home / "locks" / "tiny-proc.lock"
    lock.parent.mkdir(parents=True)
    held = open(lock, "a+b")
    fcntl.flock(held, fcntl.LOCK_EX)  # as a first process fetching the model would
    env = {**os.environ, "ERNIE2_HOME": str(home), "ERNIE2_REGISTRY": str(reg)}
    proc = subprocess.Popen([sys.executable, "-m", "ernie2", "models", "--download", "tiny-proc"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()

    def read():
        for ln in proc.stderr:
            lines.put(ln)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        while True:
            ln = lines.get(timeout=120)
            assert ln is not None, "the second process did not wait for the lock"
            if "waiting for another process" in ln:
                break
        assert server.log == []  # blocked: it has not touched the network
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        held.close()
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 0
    assert str(home / "models" / "tiny-proc") in out
    assert len(server.gets("/m/tiny.tar.gz")) == 1


def test_stale_work_directories_of_that_model_only_are_cleared(server, home, tmp_path, static):
    info = archive_model(server, tmp_path, static)
    mine, other = home / "tmp" / "tiny-static+crashed", home / "tmp" / "tiny-static.v2+busy"
    for d in (mine, other):
        d.mkdir(parents=True)
        (d / "junk").write_text("x")
    with hub.registered(info):
        hub.resolve("tiny-static", convert=convert)
    assert not mine.exists() and other.exists()


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_archive_in_the_cache_is_deleted_and_fetched_again(server, home, tmp_path,
                                                                     static, cut, caplog):
    info = archive_model(server, tmp_path, static)
    data = server.files["/m/tiny.tar.gz"]
    placed = home / "downloads" / "tiny-static" / "tiny.tar.gz"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(data[: int(len(data) * cut)])  # a download cut short, no checksum known
    with hub.registered(info), caplog.at_level("WARNING"):
        assert_matches(ErnieModel.from_pretrained("tiny-static"), static)
    assert "deleted it" in caplog.text and str(placed) in caplog.text
    assert len(server.gets("/m/tiny.tar.gz")) == 1
    assert not placed.exists()  # converted: the fetched archive is not kept either


def test_truncated_archive_offline_is_reported_and_not_reused(server, home, tmp_path, static,
                                                              monkeypatch):
    info = archive_model(server, tmp_path, static)
    data = server.files["/m/tiny.tar.gz"]
    placed = home / "downloads" / "tiny-static" / "tiny.tar.gz"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(data[: len(data) // 2])
    monkeypatch.setenv("ERNIE2_OFFLINE", "1")
    with hub.registered(info), pytest.raises(hub.ModelUnavailableError,
                                             match="truncated or corrupt archive"):
        hub.resolve("tiny-static", convert=convert)
    assert not placed.exists()
    monkeypatch.delenv("ERNIE2_OFFLINE")
    with hub.registered(info):
        assert_matches(ErnieModel.from_pretrained("tiny-static"), static)


def test_a_released_model_name_is_a_size_with_its_published_shape():
    from ernie2.model import ErnieConfig

    # ernie-tiny as PaddleNLP's init configuration gives it: 3 layers, 1024 wide, 16 heads,
    # feed-forward 4096, 600 positions, relu, vocab 50006
    c = ErnieConfig.from_name("ernie-tiny")
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size,
            c.max_position_embeddings, c.hidden_act, c.vocab_size) == (3, 1024, 16, 4096, 600,
                                                                         "relu", 50006)
    assert ErnieConfig.from_name("ernie-2.0-en", vocab_size=99).vocab_size == 99
    with pytest.raises(KeyError, match="known sizes: .*mini.*released model's: .*ernie-tiny"):
        ErnieConfig.from_name("huge")
