"""Numeric precision of a run: autocast, fp16 loss scaling, and the measured matmul peak."""

from __future__ import annotations

import contextlib
import functools
import logging
import time

import torch

from ernie2.model.modeling import native_bf16

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on a GPU that has it (else fp16); on CPU, bf16 when the CPU runs bf16
    natively (avx512_bf16 / AMX), else fp32 (`choose_cpu_precision` then times both)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "fp16":
        raise ValueError("fp16 needs a GPU (dynamic loss scaling is a CUDA feature here); use "
                         "bf16 or fp32 on CPU")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


def choose_cpu_precision(encoder: torch.nn.Module, seq_len: int, tokens: int = 2048,
                         repeats: int = 2) -> tuple[str, dict[str, float]]:
    """Time the encoder's forward and backward on a synthetic batch in fp32 and under bf16
    autocast and return the faster (bf16 only when at least 10% faster), with the timings.

    A CPU with avx512_bf16 but no AMX may run bf16 matrix products slower than fp32, while
    smaller models still gain from halved memory traffic: only a measurement tells. The probe
    draws from a private generator and leaves no gradients behind."""
    if not native_bf16():
        return "fp32", {}
    logger.info("precision auto: timing fp32 and bf16 on a synthetic batch (a few seconds; "
                "train.precision = 'fp32' or 'bf16' skips it)")
    cfg = encoder.config
    gen = torch.Generator().manual_seed(0)
    rows = max(1, tokens // seq_len)
    ids = torch.randint(5, cfg.vocab_size, (rows, seq_len), generator=gen)
    times: dict[str, float] = {}
    was_training = encoder.training
    encoder.train()
    try:
        with torch.random.fork_rng(devices=[]):
            for precision in ("fp32", "bf16"):
                best = float("inf")
                for i in range(repeats + 1):
                    start = time.perf_counter()
                    with autocast(precision, torch.device("cpu")):
                        _, encoded = encoder(ids)
                    encoded.float().square().mean().backward()
                    if i:  # the first run warms up
                        best = min(best, time.perf_counter() - start)
                times[precision] = best
    finally:
        for p in encoder.parameters():
            p.grad = None
        encoder.train(was_training)
    choice = "bf16" if times["bf16"] < 0.9 * times["fp32"] else "fp32"
    logger.info("precision auto: fp32 %.3f s, bf16 %.3f s per probe step -> %s",
                times["fp32"], times["bf16"], choice)
    return choice, times


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """Dynamic loss scaling, only for fp16 (bf16 has fp32's range)."""
    if precision == "fp16":
        return torch.amp.GradScaler(device.type)
    return None


@functools.cache
def measure_peak_flops(precision: str, device_str: str, n: int = 2048, seconds: float = 0.5) -> float:
    """FLOP/s of an n x n matmul in `precision` on `device`: the machine's practical peak,
    measured rather than read off a datasheet (clock, cores and vector units vary)."""
    logger.info("measuring the %s matmul peak on %s for MFU (%.1f s; giving peak_tflops "
                "skips it)", precision, device_str, seconds)
    device = torch.device(device_str)
    dtype = DTYPES[precision]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    flops = 2 * n ** 3 / best
    logger.info("measured %s matmul peak on %s: %.1f GFLOP/s", precision, device_str, flops / 1e9)
    return flops
