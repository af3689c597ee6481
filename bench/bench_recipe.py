"""Our training recipe against a plain torchvision-style one, at equal wall-clock, on two synthetic domains.

Every recipe is ``edge-train fit`` from scratch with a time budget (the run
ends when its minutes are spent) and no early stop, so each spends the same
minutes on the same images. ``plain`` is torchvision's
reference recipe in our trainer's terms: ResNet50 without CBAM at stride 32,
AdamW, warm-up + cosine, random-resized crop over 8-100 % and horizontal
flips, cross entropy with label smoothing 0.1, no class weights, no weight
average, no box guidance, no progressive resizing. The ablations change one
thing of ours each: no box guidance (what ours is on images without sidecar
boxes), no CBAM, cross entropy instead of focal loss, or no progressive
resizing.

Domains: ``pcb``, the synthetic PCB close-ups of ``edge-train synth`` (seven
classes, balanced); ``surface``, machined metal (``bench/surface_synth.py``:
scratches, pits and stains, two classes, three good parts for every bad one).

Reported per run, for the checkpoint each recipe keeps (``best.pt``) and for
the last epoch (``last.pt``): accuracy, balanced accuracy and defect recall;
how far validation accuracy swings over the second half of the epochs; and
the pointing score of the kept checkpoint (both domains have defect boxes).

    .venv/bin/python bench/bench_recipe.py [--budget-min 4] [--domains pcb,surface] [--ablation]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from surface_synth import generate_surfaces  # bench/, the script's own folder, is on sys.path
from torch.utils.data import DataLoader

from deploy.bench import cpu_flags
from trainer.checkpoint import load_checkpoint, model_from_checkpoint
from trainer.config import TrainConfig
from trainer.data import ImageDataset
from trainer.evaluation import split_samples
from trainer.fit import fit
from trainer.loop import evaluate
from trainer.metrics import classification_metrics
from trainer.synth import generate_dataset
from trainer.transforms import eval_transform

PLAIN = {
    "attention": [],
    "cam_stride": 32,
    "pooling": "mean",
    "dropout": 0.0,
    "augment": "imagenet",
    "loss": "ce",
    "label_smoothing": 0.1,
    "class_weights": False,
    "ema_half_life": 0.0,
    "box_guidance": 0.0,
    "progressive_resize": 1.0,
    "weight_decay": 0.05,
    "monitor": "accuracy",
}
RECIPES: dict[str, dict[str, Any]] = {"ours": {}, "plain": PLAIN}
ABLATIONS: dict[str, dict[str, Any]] = {
    "ours, no box guidance": {"box_guidance": 0.0},
    "ours, no CBAM": {"attention": []},
    "ours, mean pooling": {"pooling": "mean"},
    "ours, cross entropy": {"loss": "ce"},
    "ours, no progressive resizing": {"progressive_resize": 1.0},
}


def _scores(state: dict[str, Any], run: Path) -> dict[str, float | None]:
    model, spec = model_from_checkpoint(state)
    loader = DataLoader(ImageDataset(split_samples(run), eval_transform(spec)), batch_size=64)
    preds = evaluate(model, loader, device=torch.device("cpu"))
    classes = state["classes"]
    metrics = classification_metrics(
        preds.probs, preds.labels, classes, ok_index=classes.index("ok"), threshold=state["threshold"]
    )
    return {
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "defect_recall": metrics["defect"]["recall"],
    }


def _run(data: Path, run: Path, recipe: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    config = TrainConfig(
        **{
            "data": data,
            "out": run,
            "weights": "none",
            "image_size": args.size,
            "epochs": 200,
            "time_budget_min": args.budget_min,
            "patience": 200,
            "amp": "off",
            "seed": args.seed,
            "cam_images": 0,
            **recipe,
        }
    )
    fit(config)
    with (run / "history.csv").open() as handle:
        history = list(csv.DictReader(handle))
    accuracies = [float(row["val_accuracy"]) for row in history]
    second_half = accuracies[len(accuracies) // 2 :]
    best = load_checkpoint(run / "best.pt")
    return {
        "epochs": len(history),
        "train_seconds": round(sum(float(row["seconds"]) for row in history), 1),
        "best_epoch": best["epoch"],
        "best": _scores(best, run),
        "last": _scores(load_checkpoint(run / "last.pt"), run),
        "val_accuracy": accuracies,
        "second_half_range": [min(second_half), max(second_half)],
        "pointing": (json.loads((run / "metrics.json").read_text()).get("pointing") or {}).get("score"),
    }


def _make_data(domain: str, root: Path, args: argparse.Namespace) -> Path:
    data = root / domain
    if not data.is_dir():
        if domain == "pcb":
            generate_dataset(data, per_class=args.per_class, size=args.size, seed=args.seed, view=0.3, workers=2)
        else:
            generate_surfaces(data, defects=args.per_class, ok_per_defect=3, size=args.size, seed=args.seed)
    return data


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=4.0, help="training minutes per run (default: 4)")
    parser.add_argument("--size", type=int, default=96, help="image side (default: 96)")
    parser.add_argument("--per-class", type=int, default=150, help="images per PCB class; defects on surfaces")
    parser.add_argument("--domains", default="pcb,surface", help="comma-separated: pcb, surface (default: both)")
    parser.add_argument("--ablation", action="store_true", help="also run the ablations (on the first domain)")
    parser.add_argument("--seed", type=int, default=0, help="data, split and weights seed (default: 0)")
    parser.add_argument("--work", type=Path, help="keep data and runs here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/recipe.json"), help="JSON results file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for i, domain in enumerate(args.domains.split(",")):
            data = _make_data(domain, work / "data", args)
            recipes = {**RECIPES, **(ABLATIONS if args.ablation and i == 0 else {})}
            for name, recipe in recipes.items():
                run = work / "runs" / f"{domain}-{name.replace(', ', '-').replace(' ', '-')}"
                results.append({"domain": domain, "recipe": name, **_run(data, run, recipe, args)})

    print(f"\n{args.size} px, from scratch, {args.budget_min:g} min of training per run, fp32")
    print(
        "| domain | recipe | epochs | kept: acc | bal. acc | defect recall | last: acc | bal. acc | defect recall "
        "| val acc, 2nd half | pointing |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in results:
        b, last, (lo, hi) = r["best"], r["last"], r["second_half_range"]
        cells = [r["domain"], r["recipe"], f"{r['epochs']} ({r['train_seconds']:.0f})"]
        cells += [_pct(b[k]) for k in ("accuracy", "balanced_accuracy", "defect_recall")]
        cells += [_pct(last[k]) for k in ("accuracy", "balanced_accuracy", "defect_recall")]
        print("| " + " | ".join([*cells, f"{_pct(lo)}-{_pct(hi)}", _pct(r["pointing"])]) + " |")
    flags = cpu_flags()
    print(f"CPU flags: {' '.join(flags) or 'unknown'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "cpu_flags": flags, "cpus": os.cpu_count()}
    args.out.write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine, "results": results}, indent=1
        )
    )


if __name__ == "__main__":
    main()
