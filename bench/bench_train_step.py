"""A training step's time with AdamW's per-tensor loop against the fused update ``build_optimizer`` picks.

Times forward, backward and the optimizer step of the demo's model (ResNet50 +
CBAM, mean-max head, CAM stride 16) on random batches, the two optimizers in
alternating windows in one process (a shared machine drifts), at each input
side a clock-driven run trains at, and prints the median step of each.

    .venv/bin/python bench/bench_train_step.py [--sides 64 96] [--batch-size 16] [--rounds 6] [--steps 4]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from deploy.bench import cpu_flags
from trainer.model import build_model
from trainer.optim import build_optimizer


def _step_ms(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor
) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[64, 96], help="input sides (default: 64 96)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step (default: 16)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating windows per optimizer (default: 6)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per window (default: 4)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags: {' '.join(cpu_flags()) or '?'}")
    torch.manual_seed(0)
    fused_model = build_model(num_classes=7, weights="none", dropout=0.0)
    loop_model = copy.deepcopy(fused_model)
    fused = build_optimizer(fused_model, lr=1e-3, backbone_lr_mult=1.0, weight_decay=0.05)
    loop = build_optimizer(loop_model, lr=1e-3, backbone_lr_mult=1.0, weight_decay=0.05)
    for group in loop.param_groups:
        group["fused"] = False
    print("| side | AdamW loop ms/step | fused ms/step | fused / loop |")
    print("| ---: | ---: | ---: | ---: |")
    for side in args.sides:
        images = torch.randn(args.batch_size, 3, side, side)
        labels = torch.randint(0, 7, (args.batch_size,))
        times: dict[str, list[float]] = {"loop": [], "fused": []}
        runs = (("loop", loop_model, loop), ("fused", fused_model, fused))
        for _, model, optimizer in runs:
            _step_ms(model, optimizer, images, labels)  # warm-up: optimizer state, oneDNN primitives
        for _ in range(args.rounds):
            for name, model, optimizer in runs:
                times[name] += [_step_ms(model, optimizer, images, labels) for _ in range(args.steps)]
        slow, fast = statistics.median(times["loop"]), statistics.median(times["fused"])
        print(f"| {side} | {slow:.0f} | {fast:.0f} | {fast / slow:.2f}x |")


if __name__ == "__main__":
    main()
