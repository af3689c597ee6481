"""What ``install.sh`` does differently on a Jetson, from the installed package's own metadata.

JetPack ships TensorRT's Python bindings and an OpenCV built with GStreamer
(the CSI camera path) as system packages. pip has no TensorRT wheels for
Jetson, and ``opencv-python-headless`` from pip would shadow the system
OpenCV and lose GStreamer. So the installer makes a venv with
``--system-site-packages``, installs the package with ``--no-deps`` and then
only the requirements JetPack does not provide::

    python -m deploy.install.jetpack requirements --extras tensorrt --out FILE
    python -m deploy.install.jetpack check --tensorrt

``check`` fails unless ``cv2`` has GStreamer and, with ``--tensorrt``,
``tensorrt`` imports at version 10 or later.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from importlib.metadata import requires
from pathlib import Path

__all__ = ["DISTRIBUTION", "SYSTEM_PROVIDED", "check", "main", "requirements"]

DISTRIBUTION = "edge-inspector"
SYSTEM_PROVIDED = frozenset({"opencv-python", "opencv-python-headless", "opencv-contrib-python", "tensorrt"})
_EXTRA_MARKER = re.compile(r"""\s*extra\s*==\s*["']([^"']+)["']\s*""")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(declared: Iterable[str], extras: Iterable[str], exclude: Iterable[str] = SYSTEM_PROVIDED) -> list[str]:
    """The requirement lines for ``extras``, minus the distributions in ``exclude``.

    ``declared`` are the distribution's ``Requires-Dist`` entries. A lone
    ``extra == "x"`` marker selects by extra; any other marker is kept for
    pip to evaluate.
    """
    wanted = {_canonical(e) for e in extras}
    skip = {_canonical(n) for n in exclude}
    lines = []
    for entry in declared:
        spec, _, marker = (part.strip() for part in entry.partition(";"))
        extra = _EXTRA_MARKER.fullmatch(marker) if marker else None
        if extra is not None:
            if _canonical(extra.group(1)) not in wanted:
                continue
            marker = ""
        name = re.match(r"[A-Za-z0-9._-]+", spec)
        if name is None or _canonical(name.group(0)) in skip:
            continue
        lines.append(f"{spec}; {marker}" if marker else spec)
    return lines


def check(tensorrt: bool) -> list[str]:
    """What this environment lacks for a Jetson box (empty: nothing)."""
    from edge_inspector.capture.sources import opencv_has_gstreamer

    problems = []
    if not opencv_has_gstreamer():
        problems.append(
            "cv2 has no GStreamer: a pip OpenCV shadows JetPack's (pip uninstall opencv-python-headless in the venv)"
        )
    if tensorrt:
        from edge_inspector.backends.tensorrt_engine import import_tensorrt
        from edge_inspector.errors import BackendError

        try:
            import_tensorrt()
        except BackendError as exc:
            problems.append(f"{exc}; on a Jetson TensorRT comes with JetPack (python3-libnvinfer)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m deploy.install.jetpack``."""
    parser = argparse.ArgumentParser(prog="python -m deploy.install.jetpack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("requirements", help="write the requirements JetPack does not provide")
    r.add_argument("--extras", nargs="*", default=[])
    r.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("check", help="cv2 with GStreamer, and TensorRT >= 10 with --tensorrt")
    c.add_argument("--tensorrt", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "requirements":
        lines = requirements(requires(DISTRIBUTION) or [], args.extras)
        args.out.write_text("".join(f"{line}\n" for line in lines))
        print(f"{args.out}: {len(lines)} requirement(s); left to JetPack: {', '.join(sorted(SYSTEM_PROVIDED))}")
        return 0
    problems = check(args.tensorrt)
    for problem in problems:
        print(f"jetpack check: {problem}", file=sys.stderr)
    if not problems:
        print("jetpack check: cv2 has GStreamer" + (", TensorRT >= 10 imports" if args.tensorrt else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
