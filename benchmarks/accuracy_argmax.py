"""What the heads' accuracy costs a step: `argmax` against `max(-1).indices` (the same index,
the first maximum) over masked-LM logits of the demo's shape (about 460 masked positions of a
7695-token vocab), one thread, both in this process, best of 5 rounds of 50 calls each.

    python benchmarks/accuracy_argmax.py [--rows 460] [--vocab 7695]
"""

from __future__ import annotations

import argparse
import time

import torch


def best_ms(fn, rounds: int = 5, calls: int = 50) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e3)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=460)
    ap.add_argument("--vocab", type=int, default=7695)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    logits = torch.randn(a.rows, a.vocab)
    labels = torch.randint(0, a.vocab, (a.rows,))
    assert torch.equal(logits.argmax(-1), logits.max(-1).indices)
    arg = best_ms(lambda: (logits.argmax(-1) == labels).sum())
    mx = best_ms(lambda: (logits.max(-1).indices == labels).sum())
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}, logits {a.rows} x {a.vocab}")
    print(f"argmax             {arg:7.3f} ms")
    print(f"max(-1).indices    {mx:7.3f} ms")
    print(f"argmax / max:      {arg / mx:.1f}x")


if __name__ == "__main__":
    main()
