"""Attention kernels on this CPU: SDPA (F.scaled_dot_product_attention) against the eager form
(ernie2.model.modeling.eager_attention: two matrix products, the softmax in fp32), forward and
backward of one attention call, in fp32 and under bf16 autocast, over sequence lengths. The
ratio is SDPA's time over eager's (above 1: eager is faster), measured in the same process on the
same tensors. `ErnieModel.attention = "auto"` takes eager under bf16 autocast on a CPU with native
bf16 for sequences up to EAGER_MAX_LEN; this script is how that rule was set, and how to check it
on another machine (compare under `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`).

    python benchmarks/attention.py                  # one thread, the demo's and base shapes
    python benchmarks/attention.py --threads 2 --repeats 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ernie2.model.modeling import EAGER_MAX_LEN, eager_attention, native_bf16  # noqa: E402

# (batch, heads, tokens, head size): the demo's mini model (hidden 128, 2 heads) at its max_len
# and its fine-tuning length, and the base model (12 heads of 64) from short to long sequences.
SHAPES = [(32, 2, 96, 64), (32, 2, 64, 64), (16, 12, 128, 64), (16, 12, 256, 64),
          (8, 12, 384, 64), (8, 12, 512, 64)]


def timed(fn, q, k, v, mask, precision: str, train: bool, repeats: int) -> float:
    def once():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = fn(q, k, v, mask)
        if train:
            out.float().sum().backward()

    with torch.set_grad_enabled(train):
        for _ in range(2):
            once()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            once()
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10, help="timed calls per cell (best kept)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} thread(s), native bf16: {native_bf16()}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; auto takes eager under "
          f"bf16 up to {EAGER_MAX_LEN} tokens")
    print(f"{'shape (B, heads, T, d)':24s} {'precision':9s} {'pass':14s} {'sdpa ms':>8s} "
          f"{'eager ms':>9s} {'sdpa/eager':>10s}")
    sdpa = lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    for shape in SHAPES:
        b, _, t, _ = shape
        mask = torch.ones(b, 1, 1, t, dtype=torch.bool)
        mask[b // 2:, ..., int(t * 0.7):] = False  # half the rows padded by 30%
        for precision in ("fp32", "bf16"):
            for train in (True, False):
                q, k, v = (torch.randn(*shape, generator=gen).requires_grad_(train)
                           for _ in range(3))
                s = timed(sdpa, q, k, v, mask, precision, train, a.repeats)
                e = timed(eager_attention, q, k, v, mask, precision, train, a.repeats)
                print(f"{str(shape):24s} {precision:9s} "
                      f"{'fwd+bwd' if train else 'fwd (no grad)':14s} {s * 1e3:8.2f} "
                      f"{e * 1e3:9.2f} {s / e:9.2f}x")


if __name__ == "__main__":
    main()
