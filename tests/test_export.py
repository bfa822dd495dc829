"""ONNX export against PyTorch in onnxruntime (padding, dynamic axes, task embedding, heads), the
backends behind one signature, int8 quantization, and the export command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from ernie2 import ErnieConfig, ErnieModel  # noqa: E402
from ernie2.cli import main  # noqa: E402
from ernie2.inference import runtime  # noqa: E402
from ernie2.inference.export import export_onnx, sample_batch  # noqa: E402
from ernie2.inference.quantize import quantize_onnx, quantize_torch  # noqa: E402
from test_serve_helpers import make_models  # noqa: E402

TEXTS = ["我爱北京天安门", "这个东西质量很好", "太差了", "abc 好", "很好很好很好很好很好很好"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("export"))


@pytest.mark.parametrize("use_task_id,has_pooler", [(True, True), (False, False)])
def test_onnx_matches_torch_with_padding_at_new_shapes(tmp_path, use_task_id, has_pooler):
    torch.manual_seed(0)
    model = ErnieModel(ErnieConfig.from_name("test", vocab_size=60, use_task_id=use_task_id,
                                             has_pooler=has_pooler)).eval()
    report = export_onnx(model, tmp_path / "m.onnx")
    assert report.outputs == ["encoded"] + (["pooled"] if has_pooler else [])
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert {i.name for i in sess.get_inputs()} == \
        {"input_ids", "sent_ids", "attention_mask"} | ({"task_ids"} if use_task_id else set())
    for b, t, seed in ((5, 31, 7), (1, 3, 8)):  # neither is the traced shape
        batch = sample_batch(model.config, b, t, seed)
        got = dict(zip(report.outputs, sess.run(report.outputs,
                                                 {k: v.numpy() for k, v in batch.items()})))
        with torch.inference_mode():
            # The reference: every text alone, unpadded.
            for i in range(b):
                n = int(batch["attention_mask"][i].sum())
                one = {k: v[i:i + 1, :n] for k, v in batch.items()}
                pooled, encoded = model(one["input_ids"], one["sent_ids"], one.get("task_ids"))
                np.testing.assert_allclose(got["encoded"][i, :n], encoded[0].numpy(), atol=1e-5)
                if has_pooler:
                    np.testing.assert_allclose(got["pooled"][i], pooled[0].numpy(), atol=1e-5)


def test_finetuned_export_carries_logits_and_metadata(models, tmp_path):
    from ernie2.finetune import FinetuneModel
    report = export_onnx(models["classify"], tmp_path / "c.onnx")
    assert report.outputs == ["encoded", "pooled", "logits"]
    sess = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["ernie2.task"] == "classify" and meta["ernie2.labels"] == '["neg", "pos"]'
    ft = FinetuneModel.load(models["classify"])
    batch = sample_batch(ft.config, 3, 9, 5)
    logits = sess.run(["logits"], {k: v.numpy() for k, v in batch.items()})[0]
    with torch.inference_mode():
        pooled, _ = ft.encoder(batch["input_ids"], batch["sent_ids"], batch["task_ids"],
                               batch["attention_mask"])
        np.testing.assert_allclose(logits, ft.head(pooled).numpy(), atol=1e-5)
    # A token-level head needs inputs the graph does not take: the encoder alone is exported.
    assert export_onnx(models["ner"], tmp_path / "n.onnx").outputs == ["encoded", "pooled"]


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "int8", "bf16"])
def test_backends_predict_and_encode_like_torch(models, backend):
    ref = runtime.load(models["classify"], "torch")
    other = runtime.load(models["classify"], backend)
    assert type(other.encoder) is not type(ref.encoder) or backend == "int8"
    exact = backend == "onnx"
    e_ref, e_got = ref.encode(TEXTS), other.encode(TEXTS)
    cos = (e_ref.cls * e_got.cls).sum(1) / np.linalg.norm(e_ref.cls, axis=1) / \
        np.linalg.norm(e_got.cls, axis=1)
    if exact:
        np.testing.assert_allclose(e_got.tokens, e_ref.tokens, atol=1e-5)
    else:
        assert cos.min() > 0.99, cos
    p_ref, p_got = ref.predict(TEXTS), other.predict(TEXTS)
    for a, b in zip(p_ref, p_got):
        tol = 1e-5 if exact else 0.05
        assert abs(a["probs"]["pos"] - b["probs"]["pos"]) < tol


def test_torch_int8_replaces_linear_layers_only():
    model = ErnieModel(ErnieConfig.from_name("test", vocab_size=60)).eval()
    q = quantize_torch(model)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    n_linear = sum(type(m) is torch.nn.Linear for m in model.modules())
    assert n_linear == 2 * 6 + 1  # per layer q, k, v, output, ffn_in, ffn_out; the pooler
    assert sum(type(m) is DynamicLinear for m in q.modules()) == n_linear
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    assert isinstance(model.layers[0].ffn_in, torch.nn.Linear)  # the original is untouched
    assert q.embeddings.word_embeddings.weight.dtype == torch.float32


def test_onnx_int8_is_smaller_and_keeps_metadata(tmp_path):
    torch.manual_seed(0)
    model = ErnieModel(ErnieConfig.from_name("mini", vocab_size=500)).eval()
    export_onnx(model, tmp_path / "m.onnx")
    q = quantize_onnx(tmp_path / "m.onnx", tmp_path / "m.int8.onnx")
    assert q.stat().st_size < 0.5 * (tmp_path / "m.onnx").stat().st_size
    meta = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    assert meta[runtime.FINGERPRINT_KEY] == runtime.weights_fingerprint(model)


def test_stale_export_is_refused(models, tmp_path):
    other = ErnieModel(ErnieConfig.from_name("test", vocab_size=77, use_task_id=True)).eval()
    export_onnx(other, tmp_path / "other.onnx")
    with pytest.raises(ValueError, match="other weights"):
        runtime.load(models["encoder"], "onnx", onnx_file=tmp_path / "other.onnx")


def test_export_command_writes_files_the_server_backend_finds(models, tmp_path, capsys):
    import shutil
    d = tmp_path / "enc"
    shutil.copytree(models["encoder"], d)
    assert main(["export", "--model", str(d), "--format", "onnx-int8"]) == 0
    assert (d / "model.onnx").is_file() and (d / "model.int8.onnx").is_file()
    assert "max |onnxruntime - torch|" in capsys.readouterr().out
    loaded = runtime.load(d, "onnx-int8")
    assert loaded.encoder.path == d / "model.int8.onnx"
    assert main(["export", "--model", str(tmp_path / "missing")]) == 1
    assert main(["export", "--model", str(d), "--output", str(tmp_path / "x" / "e.onnx")]) == 0
    assert (tmp_path / "x" / "e.onnx").is_file()


def test_unknown_backend_and_cpu_only_backends():
    with pytest.raises(ValueError, match="unknown backend"):
        runtime.load(".", "tensorrt")
    with pytest.raises(ValueError, match="CPU only"):
        runtime.load(".", "onnx-int8", device="cuda")
