"""A digits quick run beside a busy neighbour: how many threads, which OpenMP wait policy?

    python bench/bench_neighbour.py --variants 2 1 2p --repeat 1 --out /tmp/neighbour [--steps 60]

Runs ``bench/bench_eta.py`` (one digits quick run, seed 0, with its ETA trace) in a fresh process for each
variant -- ``2`` / ``1``: torch threads, ``p`` suffix: OMP_WAIT_POLICY=PASSIVE (it must be set before torch
is imported, hence a new process) -- once on the machine as it is ("quiet") and once beside a neighbour:
another Python process doing 512x512 float matmuls with 2 torch threads at nice 19, started in its own
session (``setsid``) like another user's job. With the kernel's autogroup scheduling (the default on
desktop and many server kernels) nice only ranks processes of one session, so the neighbour still takes
its fair share. Prints the wall time of every run and the load average before it; the runs are paired
(quiet and busy alternate) because the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEIGHBOUR = ("import torch; torch.set_num_threads(2); a = torch.randn(512, 512)\n"
             "while True: a = torch.tanh(a @ a)")


# a short stand-in for a run: N training steps of the paper's CNN at the digits quick batch size (64, 28x28)
STEPS = ("import sys, time, torch\n"
         "from ewe.models import build_model\n"
         "torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(0)\n"
         "m = build_model('conv2', (1, 28, 28)); opt = torch.optim.Adam(m.parameters(), 1e-3)\n"
         "x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))\n"
         "t = time.perf_counter()\n"
         "for _ in range(int(sys.argv[2])):\n"
         "    loss = torch.nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()\n"
         "print(time.perf_counter() - t)\n")


def steps(variant: str, busy: bool, n: int) -> dict:
    threads = int(variant.rstrip("p"))
    env = {**os.environ, **({"OMP_WAIT_POLICY": "PASSIVE"} if variant.endswith("p") else {})}
    neighbour = None
    if busy:
        neighbour = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", NEIGHBOUR],
                                     start_new_session=True)
        time.sleep(2)
    load = os.getloadavg()[0]
    try:
        seconds = float(subprocess.run([sys.executable, "-c", STEPS, str(threads), str(n)], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return {"variant": variant, "busy": busy, "run_seconds": round(seconds, 2), "load_before": load}


def one(variant: str, busy: bool, out: Path) -> dict:
    threads = int(variant.rstrip("p"))
    env = {**os.environ}
    if variant.endswith("p"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    neighbour = None
    if busy:
        neighbour = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", NEIGHBOUR],
                                     start_new_session=True)
        time.sleep(2)
    trace = out / f"{'busy' if busy else 'quiet'}-{variant}-{int(time.time())}.json"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        subprocess.run([sys.executable, str(ROOT / "bench" / "bench_eta.py"), "--threads", str(threads),
                        "--trace", str(trace)], env=env, check=True, stdout=subprocess.DEVNULL)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return {"variant": variant, "busy": busy, "seconds": round(time.perf_counter() - t0, 1),
            "run_seconds": json.loads(trace.read_text())["total"], "load_before": load, "trace": str(trace)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["2", "1", "2p"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--busy-only", action="store_true")
    ap.add_argument("--out", default="/tmp/neighbour")
    ap.add_argument("--steps", type=int, default=0,
                    help="this many training steps instead of a whole run (seconds instead of minutes)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))     # so that `finally` stops the neighbour
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for _ in range(args.repeat):
        for variant in args.variants:
            for busy in ((True,) if args.busy_only else (False, True)):
                row = steps(variant, busy, args.steps) if args.steps else one(variant, busy, out)
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(out / "rows.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"| variant | machine | {f'{args.steps} steps' if args.steps else 'run time'} (s) | load before |\n"
          "|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {'busy neighbour' if r['busy'] else 'as is'} | {r['run_seconds']:.1f} | "
              f"{r['load_before']:.1f} |")


if __name__ == "__main__":
    main()
