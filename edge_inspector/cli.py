"""``edge-inspector``: the agent's command line on the box."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_inspector.errors import EdgeInspectorError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-inspector", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the JSON Schemas of the contracts (bundle manifest)")
    c = sub.add_parser("check-bundle", help="verify a bundle's manifest and file hashes")
    c.add_argument("bundle", type=Path)
    sub.add_parser("backends", help="list the inference backends usable on this machine")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "schema":
        from edge_inspector.bundle import BundleManifest

        print(json.dumps({"BundleManifest": BundleManifest.model_json_schema()}, indent=2))
    elif args.command == "check-bundle":
        from edge_inspector.bundle import load_bundle

        manifest = load_bundle(args.bundle).manifest
        print(
            f"{args.bundle}: {manifest.model_name} {manifest.model_version}, {len(manifest.classes)} classes, "
            f"variants {', '.join(sorted(manifest.variants))}; all {len(manifest.files)} file hashes match"
        )
    else:
        from edge_inspector.backends import available_backends

        for kind in available_backends():
            print(kind.value)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edge-inspector``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    try:
        return _run(args)
    except EdgeInspectorError as exc:
        if args.debug:
            raise
        print(f"edge-inspector: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
