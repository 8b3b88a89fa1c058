"""How to spend two cores: one model with 2 threads, or two models at once with 1 thread each?

    python bench/bench_threads.py --n 8000 --epochs 1

Trains the paper's CNN (ewe.train.train_clean) on random MNIST-shaped data (timing does not depend on the
pixels) three ways and prints the seconds and the throughput in models per minute: (a) one model, 1
thread; (b) one model, 2 threads; (c) two models at the same time in two Python threads, 1 torch thread
each (torch releases the GIL inside its kernels). If (c) beats (b), a run's independent models (the clean
reference, the independent clean model, the baselines, the three thieves) could train side by side.
Measured (docs/history/2026-11-28-presets-and-step-cost.md): (c) led by 1.2-1.4x with the NCHW CNN, and no
longer leads since the CNN is channels-last (23.6 against 24.8 models a minute), so runs train one model at a time.
"""
from __future__ import annotations

import argparse
import threading
import time

import torch

from ewe.callbacks import Reporter  # noqa: E402
from ewe.models import build_model  # noqa: E402
from ewe.train import train_clean  # noqa: E402
from ewe.malloc import apply_unless_disabled  # noqa: E402

apply_unless_disabled()   # this process trains: reuse freed memory (ewe.malloc; EWE_MALLOC=0 turns it off)


def train_one(x, y, args, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_model("conv2", tuple(x.shape[1:]))
    train_clean(model, x, y, epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, reporter=Reporter(),
                stage="bench", name=f"m{seed}", seed=seed)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8000, help="training samples")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.n,), generator=g)
    torch.set_num_threads(1)
    train_one(x[:512], y[:512], args, 99)                      # warm-up (allocator, kernels)
    one = timed(lambda: train_one(x, y, args, 0))
    torch.set_num_threads(2)
    two = timed(lambda: train_one(x, y, args, 1))
    torch.set_num_threads(1)

    def pair() -> None:
        threads = [threading.Thread(target=train_one, args=(x, y, args, s)) for s in (2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    both = timed(pair)
    print(f"{args.n} samples x {args.epochs} epoch(s), batch {args.batch_size}, conv2:")
    for label, seconds, models in (("(a) one model, 1 thread", one, 1), ("(b) one model, 2 threads", two, 1),
                                   ("(c) two models at once, 1 thread each", both, 2)):
        print(f"  {label:<40} {seconds:6.1f} s  {60 * models / seconds:6.2f} models/min")


if __name__ == "__main__":
    main()
