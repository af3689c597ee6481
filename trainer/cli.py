"""``edge-train``: synthesize data, train, evaluate.

Arguments become a typed ``TrainConfig`` here, at the edge; nothing below
sees argparse.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from edge_inspector.console import run_command
from edge_inspector.errors import ConfigError
from trainer.config import TrainConfig, load_train_config
from trainer.loop import StepStats
from trainer.synth import DEFAULT_VIEW

__all__ = ["main"]


class _TqdmProgress:
    """A tqdm bar showing running loss and accuracy."""

    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, stats: StepStats) -> None:
        self._bar.set_postfix(loss=f"{stats.loss:.4f}", acc=f"{stats.accuracy:.3f}", lr=f"{stats.lr:.2e}")
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def _csv(value: str) -> list[str]:
    return [] if value.strip().lower() in {"", "none"} else [v.strip() for v in value.split(",") if v.strip()]


def _grid(value: str) -> tuple[int, int]:
    try:
        columns, rows = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLUMNSxROWS such as 8x6, got {value!r}") from None
    return columns, rows


def _config_help(name: str) -> str:
    """A fit flag's help: its TrainConfig field's description and default, written once, there."""
    field = TrainConfig.model_fields[name]
    if field.is_required():
        return f"{field.description} (required, on the command line or in --config)"
    default = field.default
    if default is None:  # the description says what the default resolves to
        return str(field.description)
    if isinstance(default, Enum):
        shown = default.value
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    elif isinstance(default, list):
        shown = ",".join(default) or "none"
    else:
        shown = str(default)
    return f"{field.description} (default: {shown})"


def _add_fit(sub: Any) -> None:
    p = sub.add_parser("fit", help="train a defect classifier on an image folder")

    def flag(*names: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", _config_help(names[0].lstrip("-").replace("-", "_")).replace("%", "%%"))
        p.add_argument(*names, **kwargs)

    switch = argparse.BooleanOptionalAction
    flag("--data", type=Path)
    flag("--out", type=Path)
    p.add_argument("--config", type=Path, help="YAML file of TrainConfig fields; flags override it (default: none)")
    flag("--image-size", type=int)
    flag("--weights")
    flag("--freeze", type=_csv)
    flag("--attention", type=_csv)
    flag("--cam-stride", type=int, choices=[32, 16])
    flag("--pooling", choices=["mean-max", "mean"])
    flag("--dropout", type=float)
    flag("--epochs", type=int)
    flag("--time-budget-min", type=float)
    flag("--batch-size", type=int)
    flag("--lr", type=float)
    flag("--backbone-lr-mult", type=float)
    flag("--weight-decay", type=float)
    flag("--warmup-epochs", type=float)
    flag("--progressive-resize", type=float)
    flag("--label-smoothing", type=float)
    flag("--box-guidance", type=float)
    flag("--cell-guidance", type=float)
    flag("--ema-half-life", type=float)
    flag("--augment", choices=["defect", "imagenet"])
    flag("--loss", choices=["focal", "ce"])
    flag("--focal-gamma", type=float)
    flag("--class-weights", action=switch, default=None)
    flag("--weighted-sampler", action=switch, default=None)
    flag("--val-fraction", type=float)
    flag("--validate-from", type=float)
    flag("--ok-class")
    flag("--threshold", type=float)
    flag("--patience", type=int)
    flag("--min-delta", type=float)
    flag("--monitor", choices=["balanced_accuracy", "accuracy", "loss"])
    flag("--seed", type=int)
    flag("--workers", type=int)
    flag("--device")
    flag("--amp", choices=["auto", "on", "off"])
    flag("--compile", action=switch, default=None)
    flag("--grad-checkpointing", action=switch, default=None)
    flag("--channels-last", action=switch, default=None)
    flag("--resume", action="store_true", default=None)
    flag("--cam-images", type=int)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-train", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks (default: off)")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="render a synthetic PCB defect dataset")
    s.add_argument("--out", type=Path, required=True, help="folder to write <class>/*.png into (required)")
    s.add_argument("--per-class", type=int, default=40, help="images per class (default: 40)")
    s.add_argument("--size", type=int, default=128, help="side of the square images in pixels (default: 128)")
    s.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default: 0)")
    s.add_argument(
        "--view",
        type=float,
        default=DEFAULT_VIEW,
        help=f"fraction of the board side in view (1 = whole board; default {DEFAULT_VIEW})",
    )
    s.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="rendering processes (default: the CPU count)"
    )

    b = sub.add_parser("synth-panels", help="render synthetic whole panels of boards with VOC XML defect boxes")
    b.add_argument("--out", type=Path, required=True, help="folder to write panel_<i>.png and .xml into (required)")
    b.add_argument("--count", type=int, default=20, help="panels (default: 20)")
    b.add_argument("--grid", type=_grid, default=(8, 6), help="boards per panel, COLUMNSxROWS (default: 8x6)")
    b.add_argument("--cell", type=int, default=200, help="side of each board in pixels (default: 200)")
    b.add_argument("--max-defects", type=int, default=3, help="defects per panel, 0 to this many (default: 3)")
    b.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default: 0)")
    b.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="rendering processes (default: the CPU count)"
    )

    t = sub.add_parser(
        "tiles", help="cut annotated board photos (Pascal VOC XML or COCO JSON) into training tiles, split by board"
    )
    t.add_argument("--boards", type=Path, required=True, help="folder of board photos and annotations (required)")
    t.add_argument("--out", type=Path, required=True, help="new folder for train/ and val/ (required)")
    t.add_argument("--tile", type=int, required=True, help="tile side in photo pixels (required)")
    t.add_argument("--class-map", type=Path, help="YAML or JSON {annotation name: class} (default: names as they are)")
    t.add_argument("--per-box", type=int, default=2, help="tiles around each defect, placed at random (default: 2)")
    t.add_argument("--ok-per-board", type=int, default=2, help="defect-free tiles from each board (default: 2)")
    t.add_argument("--val-fraction", type=float, default=0.2, help="share of the boards to validate on (default: 0.2)")
    t.add_argument("--ok-class", default="ok", help="class of the defect-free tiles (default: ok)")
    t.add_argument("--seed", type=int, default=0, help="same seed, same tiles and split (default: 0)")

    _add_fit(sub)

    sub.add_parser(
        "fetch-weights",
        help="put torchvision's ImageNet ResNet50 weights in the torch hub cache (downloaded once, hash-checked)",
    )

    e = sub.add_parser("evaluate", help="score a run's best checkpoint and rewrite its report")
    e.add_argument("--run", type=Path, required=True, help="training run directory with best.pt (required)")
    e.add_argument("--data", type=Path, help="image folder to evaluate on (default: the run's validation split)")
    e.add_argument("--out", type=Path, help="report folder (default: the run directory)")
    return parser


_FIT_FIELDS = set(TrainConfig.model_fields)


def _run(args: argparse.Namespace) -> int:
    if args.command == "synth":
        from trainer.synth import generate_dataset

        try:
            summary = generate_dataset(
                args.out, per_class=args.per_class, size=args.size, seed=args.seed, view=args.view, workers=args.workers
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        print(f"wrote {summary.count} images of {len(summary.classes)} classes to {summary.out}")
        return 0
    if args.command == "synth-panels":
        from trainer.synth.panels import generate_panels

        try:
            panels = generate_panels(
                args.out,
                count=args.count,
                seed=args.seed,
                grid=args.grid,
                cell=args.cell,
                max_defects=args.max_defects,
                workers=args.workers,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        size = f"{panels.width} x {panels.height} px"
        print(f"wrote {panels.count} panels of {size}, {panels.defects} defects, to {panels.out}")
        return 0
    if args.command == "tiles":
        return _tiles(args)
    if args.command == "fit":
        from trainer.fit import fit

        config = load_train_config(args.config, {k: v for k, v in vars(args).items() if k in _FIT_FIELDS})
        result = fit(config, progress=_TqdmProgress if sys.stderr.isatty() else None)
        if result.metrics:
            print(
                f"best epoch {result.best_epoch}: accuracy {result.metrics['accuracy']:.3f}, balanced accuracy "
                f"{result.metrics['balanced_accuracy']:.3f}; report {result.run_dir / 'report.html'}"
            )
        return 0
    if args.command == "fetch-weights":
        from trainer.model import imagenet_state_dict, imagenet_weights_path

        imagenet_state_dict()
        print(f"ImageNet ResNet50 weights: {imagenet_weights_path()}")
        return 0
    from trainer.evaluation import write_evaluation

    metrics = write_evaluation(args.run, data=args.data, out=args.out)
    print(f"accuracy {metrics['accuracy']:.3f}, balanced accuracy {metrics['balanced_accuracy']:.3f}")
    return 0


def _tiles(args: argparse.Namespace) -> int:
    from trainer.boards import load_class_map, scan_boards, write_tiles

    class_map = load_class_map(args.class_map) if args.class_map else None
    scan = scan_boards(args.boards, class_map)
    try:
        summary = write_tiles(
            scan,
            args.out,
            tile=args.tile,
            per_box=args.per_box,
            ok_per_board=args.ok_per_board,
            val_fraction=args.val_fraction,
            seed=args.seed,
            ok_class=args.ok_class,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    boards = {part: len(names) for part, names in summary.boards.items()}
    print(
        f"{sum(boards.values())} boards ({boards['train']} train, {boards['val']} val) -> "
        f"{sum(sum(c.values()) for c in summary.tiles.values())} tiles of {summary.tile} px in {summary.out}; "
        f"{summary.clipped_boxes} box(es) clipped, {summary.dropped_boxes} dropped, "
        f"{len(summary.skipped_files)} annotation file(s) and {len(summary.unreadable_photos)} photo(s) skipped"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edge-train``."""
    args = _parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    return run_command("edge-train", args, _run, level=logging.INFO if rank == 0 else logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
