"""``edge-inspector``: the agent's command line on the box."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_inspector.console import run_command

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-inspector", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks (default: off)")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the inspection agent")
    r.add_argument("--config", type=Path, required=True, help="the agent's YAML config (required)")
    k = sub.add_parser("check-config", help="validate a config file without running")
    k.add_argument("config", type=Path, help="the agent's YAML config")
    sub.add_parser("schema", help="print the JSON Schemas of the MQTT messages and the bundle manifest")
    c = sub.add_parser("check-bundle", help="verify a bundle's manifest and file hashes")
    c.add_argument("bundle", type=Path, help="bundle directory")
    sub.add_parser("backends", help="list the inference backends usable on this machine")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "run":
        from edge_inspector.config import load_config
        from edge_inspector.daemon import Agent

        return Agent(load_config(args.config)).run()
    if args.command == "check-config":
        from edge_inspector.config import load_config
        from edge_inspector.messages import topic_root

        config = load_config(args.config)
        root = topic_root(config.mqtt.prefix, config.station)
        print(f"{args.config}: valid (station {config.station}, topics under {root}/)")
    elif args.command == "schema":
        from edge_inspector.bundle import BundleManifest
        from edge_inspector.messages import message_schemas

        print(json.dumps({**message_schemas(), "BundleManifest": BundleManifest.model_json_schema()}, indent=2))
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
    return run_command("edge-inspector", args, _run, level=logging.INFO if args.command == "run" else logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
