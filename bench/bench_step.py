"""Step-cost benchmark: one EWE watermark step (CE - kappa * SNNL on three layers, temperature gradient)
against one plain cross-entropy step on the same batch and model; the arithmetic floor ratio (FLOPs);
and the achieved GFLOP/s of the SNNL part against this machine's large-matmul GFLOP/s.

    python bench/bench_step.py [--batch 512] [--repeats 10] [--threads 2] [--nchw]

Prints numbers; it is not a test. Random inputs (no dataset needed): step cost does not depend on data.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ewe.models import ConvNet  # noqa: E402
from ewe.watermarks.snnl import Temperatures, snnl_layers  # noqa: E402
from ewe.train import make_optimizer  # noqa: E402
from ewe.malloc import apply_unless_disabled  # noqa: E402

apply_unless_disabled()   # this process trains: reuse freed memory (ewe.malloc; EWE_MALLOC=0 turns it off)


def timeit(fn, repeats: int) -> tuple[float, float]:
    fn(), fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), (max(times) - min(times)) / 2


def conv_flops(batch: int) -> float:
    """Forward FLOPs of the 2-conv CNN (multiply-add = 2)."""
    c1 = 2 * 28 * 28 * 32 * 25
    c2 = 2 * 14 * 14 * 64 * 32 * 9
    fc = 2 * (3136 * 128 + 128 * 10)
    return batch * (c1 + c2 + fc)


DIMS = [32 * 28 * 28, 64 * 14 * 14, 128]


def snnl_flops(batch: int) -> float:
    """Work this implementation needs: the Gram matrix z z^T forward (2 B^2 D) and its one-matmul
    backward (dG + dG^T) z (2 B^2 D). Spec 0b counted autograd's generic backward (4 B^2 D): 6 B^2 D."""
    return sum(2 * 2 * batch * batch * d for d in DIMS)


def snnl_flops_generic(batch: int) -> float:
    return sum(3 * 2 * batch * batch * d for d in DIMS)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nchw", action="store_true",
                    help="the CNN in the default NCHW layout (ConvNet is channels-last since session 5)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B = args.batch
    model = ConvNet()
    if args.nchw:
        model = model.to(memory_format=torch.contiguous_format)
    opt = make_optimizer(model)
    x = torch.rand(B, 1, 28, 28)
    y = torch.randint(0, 10, (B,))
    w = torch.cat([torch.ones(B // 2), torch.zeros(B // 2)])
    temps = Temperatures([1.0] * 3)
    kappa = torch.tensor([0.1] * 3)

    def plain_step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def ewe_step():
        logits, hidden = model.features(x)
        s = snnl_layers(hidden, w, temps, "cosine")
        loss = F.cross_entropy(logits, y) - (kappa * torch.stack(s)).sum()
        g = temps.gradient(s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        temps.apply(g)
        opt.step()

    hidden = [h.detach().requires_grad_(True) for h in model.features(x)[1]]

    def snnl_only():
        s = snnl_layers(hidden, w, temps, "cosine")
        torch.stack(s).sum().backward()

    a = torch.randn(B, 25088)

    def matmul():
        a @ a.T

    t_plain, sp = timeit(plain_step, args.repeats)
    t_ewe, se = timeit(ewe_step, args.repeats)
    t_snnl, ss = timeit(snnl_only, args.repeats)
    t_mm, sm = timeit(matmul, args.repeats)
    plain_fl = 3 * conv_flops(B)
    mm_gflops = 2 * B * B * 25088 / t_mm / 1e9
    snnl_gflops = snnl_flops(B) / t_snnl / 1e9
    print(f"batch {B}, threads {args.threads}, layout={'NCHW' if args.nchw else 'channels-last'}, "
          f"torch {torch.__version__}")
    print(f"plain step        {t_plain * 1e3:8.1f} ms ± {sp * 1e3:.1f}   ({plain_fl / t_plain / 1e9:.1f} GFLOP/s)")
    print(f"EWE step          {t_ewe * 1e3:8.1f} ms ± {se * 1e3:.1f}")
    print(f"measured ratio    {t_ewe / t_plain:8.2f}x")
    print(f"arithmetic floor  {(plain_fl + snnl_flops(B)) / plain_fl:8.2f}x  "
          f"(plain {plain_fl / 1e9:.1f} GFLOP + SNNL {snnl_flops(B) / 1e9:.1f} GFLOP; with autograd's "
          f"generic backward, as spec 0b counts: {(plain_fl + snnl_flops_generic(B)) / plain_fl:.2f}x)")
    print(f"SNNL fwd+bwd      {t_snnl * 1e3:8.1f} ms ± {ss * 1e3:.1f}  = {snnl_gflops:.1f} GFLOP/s")
    print(f"matmul {B}x25088x{B} {t_mm * 1e3:6.1f} ms = {mm_gflops:.1f} GFLOP/s  "
          f"-> SNNL reaches {100 * snnl_gflops / mm_gflops:.0f} % of matmul throughput")


if __name__ == "__main__":
    main()
