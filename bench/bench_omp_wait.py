"""Training steps per second with OpenMP's default wait policy against ``OMP_WAIT_POLICY=PASSIVE``,
on an idle machine and beside another job that keeps every core busy.

PyTorch's CPU threads wait for each other between parallel regions; by
default they spin. When another job holds the cores, a spinning thread burns
the time slice the thread it waits for needs. Each measurement runs in a
fresh process (the policy is read once, when OpenMP starts): the product's
model (ResNet50 + CBAM, stride-16 map) trains on random 64 px batches of 16
for ``--seconds``.

    python bench/bench_omp_wait.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys

from deploy.bench import cpu_flags

_CHILD = """
import time, torch
from trainer.model import build_model
torch.manual_seed(0)
model = build_model(num_classes=7)
x, y = torch.randn(16, 3, 64, 64), torch.randint(0, 7, (16,))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
def step():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
step()
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < {seconds}:
    step()
    steps += 1
print(steps / (time.perf_counter() - start))
"""


def _steps_per_second(policy: str | None, seconds: float) -> float:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    code = _CHILD.format(seconds=seconds)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _busy_loops(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="training time per measurement (default: 20)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"CPU flags: {' '.join(cpu_flags()) or 'unknown'}; {cores} CPUs; {platform.processor() or '?'}")
    print(f"{'machine':<28} {'default':>10} {'PASSIVE':>10} {'PASSIVE / default':>18}")
    for label, loops in (("idle", 0), (f"{cores} busy loops beside it", cores)):
        others = _busy_loops(loops)
        try:
            default = _steps_per_second(None, args.seconds)
            passive = _steps_per_second("PASSIVE", args.seconds)
        finally:
            for proc in others:
                proc.kill()
                proc.wait()
        print(f"{label:<28} {default:>8.2f}/s {passive:>8.2f}/s {passive / default:>17.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
