"""Would training the innocent population's same-architecture members together, as one batched model, be
faster than one after another? (issue 24: ``torch.func.stack_module_state`` + ``vmap``).

    python bench/bench_batched.py [--models 4] [--threads 1] [--steps 30] [--arch conv2]

Times one training step (Adam, cross-entropy, the quick presets' batch of 128 on 1x28x28 inputs, each member
its own batch as the population's seeded data orders give it) two ways, alternating so that a busy machine
slows both alike: the plain loop over K separate models, and the K models stacked into one vmapped
functional model whose summed loss gives each member exactly its own gradient (Adam is elementwise, so one
Adam over the stacked tensors is K separate Adams). Prints milliseconds per model-step and the ratio; writes
bench/results/batched_training.json. Prints numbers; it is not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from ewe.models import build_model

RESULTS = Path(__file__).resolve().parent / "results" / "batched_training.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--arch", default="conv2")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    k, shape = args.models, (1, 28, 28)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(k, args.batch, *shape, generator=g)
    y = torch.randint(0, 10, (k, args.batch), generator=g)

    models = [build_model(args.arch, shape, seed=i) for i in range(k)]
    opts = [torch.optim.Adam(m.parameters(), 1e-3) for m in models]

    def one_after_another():
        for i, (m, opt) in enumerate(zip(models, opts)):
            loss = F.cross_entropy(m(x[i].contiguous(memory_format=torch.channels_last)), y[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    params, buffers = stack_module_state([build_model(args.arch, shape, seed=i) for i in range(k)])
    params = {n: torch.nn.Parameter(p) for n, p in params.items()}
    stacked_opt = torch.optim.Adam(params.values(), 1e-3)
    skeleton = build_model(args.arch, shape, seed=0).to("meta")

    def together():
        logits = vmap(lambda p, b, xb: functional_call(skeleton, (p, b), (xb,)))(params, buffers, x)
        # the sum of the members' mean losses: each member's gradient is its own loss's
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / args.batch
        stacked_opt.zero_grad(set_to_none=True)
        loss.backward()
        stacked_opt.step()

    times: dict[str, list[float]] = {"one_after_another": [], "vmap": []}
    for r in range(args.rounds):
        for name, step in (("one_after_another", one_after_another), ("vmap", together)):
            step()   # warm-up
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - t0) / args.steps / k * 1000)
            print(f"round {r + 1}/{args.rounds} {name:18s} {times[name][-1]:7.1f} ms per model-step", flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    out = {"arch": args.arch, "models": k, "threads": args.threads, "batch": args.batch, "steps": args.steps,
           "ms_per_model_step": times, "median_ms": med, "vmap_over_plain": med["vmap"] / med["one_after_another"],
           "load_average": os.getloadavg()[0], "cpus": os.cpu_count(), "torch": torch.__version__}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(f"median: plain {med['one_after_another']:.1f} ms, vmap {med['vmap']:.1f} ms per model-step "
          f"(vmap / plain = {out['vmap_over_plain']:.2f}; load average {out['load_average']:.1f} on "
          f"{out['cpus']} cores) -> {RESULTS}")


if __name__ == "__main__":
    main()
