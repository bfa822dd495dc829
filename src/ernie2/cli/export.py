"""Export a model directory (pre-trained or fine-tuned) to ONNX with dynamic batch and sequence
axes, checked against PyTorch in ONNX Runtime on padded batches; onnx-int8 also writes a
dynamically int8-quantized copy. The onnx serving backends find model.onnx / model.int8.onnx
in the model directory."""

HELP = "export a model to ONNX (optionally int8-quantized)"


def add_arguments(p):
    from ernie2.inference.export import OPSET

    p.add_argument("--model", required=True, help="model directory (pre-trained or fine-tuned)")
    p.add_argument("--format", choices=["onnx", "onnx-int8"], default="onnx")
    p.add_argument("--output", metavar="FILE",
                   help="ONNX file to write (default: model.onnx in --model; onnx-int8 writes "
                        "FILE and its quantized copy FILE with .int8.onnx)")
    p.add_argument("--opset", type=int, default=OPSET)
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest accepted |onnxruntime - torch| in the check")


def run(args):
    from pathlib import Path

    from ernie2.inference.export import export_onnx
    from ernie2.inference.quantize import quantize_onnx
    from ernie2.inference.runtime import ONNX_FILE

    model = Path(args.model)
    out = Path(args.output) if args.output else (model if model.is_dir() else model.parent) / ONNX_FILE
    report = export_onnx(model, out, opset=args.opset, atol=args.atol)
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in report.max_abs_diff.items())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; outputs {', '.join(report.outputs)}); "
          f"max |onnxruntime - torch| on padded batches: {diffs}")
    if args.format == "onnx-int8":
        q = quantize_onnx(out, out.with_name(out.name.removesuffix(".onnx") + ".int8.onnx"))
        print(f"wrote {q} ({q.stat().st_size / 1e6:.1f} MB, dynamic int8)")
