"""Serve a model over HTTP: POST /encode (pooled and token vectors), POST /predict (a fine-tuned
model's labels, tags or spans), GET /health. Concurrent requests are batched together. Binds the
loopback address unless --host says otherwise. See docs/serving.md."""

HELP = "run the HTTP inference server (/encode, /predict, /health)"


def add_arguments(p):
    from ernie2.inference.runtime import BACKENDS
    from ernie2.inference.settings import LONG_POLICIES, ServeSettings

    d = ServeSettings()
    p.add_argument("--model", required=True, help="model directory (pre-trained or fine-tuned)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but loopback exposes the server to others")
    p.add_argument("--port", type=int, default=8881)
    p.add_argument("--backend", default="torch", choices=list(BACKENDS),
                   help="; ".join(f"{b.name}: {b.description}" for b in BACKENDS.values()))
    p.add_argument("--onnx", metavar="FILE",
                   help="exported model for the onnx backends (default: model.onnx or "
                        "model.int8.onnx in --model, exported on the fly when missing)")
    p.add_argument("--threads", type=int, help="CPU threads for the model (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (torch and bf16 backends)")
    p.add_argument("--max_batch", type=int, default=d.max_batch, help="texts per model call")
    p.add_argument("--max_wait_ms", type=float, default=d.max_wait_ms,
                   help="how long a request waits for others to share a batch")
    p.add_argument("--max_len", type=int,
                   help="tokens per text or pair (default: the fine-tuned max_len, else 128)")
    p.add_argument("--long", choices=LONG_POLICIES, default=d.long,
                   help="what to do with texts longer than max_len")
    p.add_argument("--max_texts", type=int, default=d.max_texts, help="texts per request")
    p.add_argument("--max_chars", type=int, default=d.max_chars, help="characters per text")
    p.add_argument("--max_body_bytes", type=int, default=d.max_body_bytes)
    p.add_argument("--max_queued", type=int, default=d.max_queued,
                   help="texts waiting for the model before new requests get HTTP 429")
    p.add_argument("--api-key", dest="api_key",
                   help="require this key of every request ('Authorization: Bearer KEY' or "
                        "'X-API-Key: KEY'); default: the ERNIE2_API_KEY environment variable")
    p.add_argument("--log_level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])


def run(args):
    import torch

    from ernie2.inference import runtime
    from ernie2.inference.server import serve
    from ernie2.inference.settings import ServeSettings

    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                             max_body_bytes=args.max_body_bytes, max_texts=args.max_texts,
                             max_chars=args.max_chars, max_len=args.max_len, long=args.long,
                             max_queued=args.max_queued, api_key=args.api_key)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = runtime.load(args.model, args.backend, onnx_file=args.onnx, threads=args.threads,
                         device=args.device)
    serve(model, args.host, args.port, settings, args.threads, args.log_level)
