"""The whole chain on one machine: a video of synthetic boards, a local Mosquitto,
the agent, and a subscriber that prints verdicts and saves heatmaps.

    python -m examples.demo --bundle bundle/demo --out demo
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from edge_inspector.errors import EdgeInspectorError
from edge_inspector.messages import Verdict, topic_root, topics
from examples.local_broker import LocalBroker, free_port
from trainer.synth.video import render_frames, write_video

STATION = "demo-line"


class _Collector:
    """Subscribes to the station, prints each verdict, saves each heatmap."""

    def __init__(self, broker: LocalBroker, heatmaps: Path, truth: list[str]) -> None:
        self.heatmaps, self.truth = heatmaps, truth
        self.verdicts: list[Verdict] = []
        self.done = threading.Condition()
        self.topics = topics("edge-inspector", STATION)
        self.client = broker.subscribe(f"{topic_root('edge-inspector', STATION)}/#", self._message)

    def _message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topics["verdict"]:
            verdict = Verdict.model_validate_json(message.payload)
            truth = self.truth[(verdict.seq - 1) % len(self.truth)]
            print(
                f"seq {verdict.seq:3d}  true {truth:16s} -> {verdict.label:16s} "
                f"{'DEFECT' if verdict.is_defect else 'ok    '} score {verdict.score:.2f}  "
                f"{verdict.latency.total_ms:6.1f} ms  [{verdict.model.backend} {verdict.model.precision}]",
                flush=True,
            )
            with self.done:
                self.verdicts.append(verdict)
                self.done.notify_all()
        elif message.topic == self.topics["heatmap"]:
            seq = dict(message.properties.UserProperty).get("seq", "x") if message.properties else "x"
            (self.heatmaps / f"{int(seq):04d}.jpg").write_bytes(message.payload)

    def wait(self, count: int, timeout: float) -> bool:
        with self.done:
            return self.done.wait_for(lambda: len(self.verdicts) >= count, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_demo(bundle: Path, out: Path, frames: int, fps: float) -> int:
    """Render the video, start broker and agent, collect every verdict, stop cleanly."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "heatmaps").mkdir(exist_ok=True)
    images, truth = render_frames(frames, size=96, seed=2024, frame_size=288)
    video = write_video(out / "line.avi", images, fps=fps)
    http_port = free_port()
    with LocalBroker() as broker:
        config = {
            "station": STATION,
            "camera": {"source": str(video.resolve()), "fps": fps},
            "model": {"bundle": str(bundle.resolve()), "backend": "auto", "precision": "int8"},
            "mqtt": {"host": broker.host, "port": broker.port, "heatmap": "always", "heatmap_qos": 1},
            "spool": {"path": str((out / "spool.sqlite").resolve())},
            "samples": {"folder": str((out / "samples").resolve())},
            "http": {"port": http_port},
        }
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"broker on {broker.host}:{broker.port}; agent config {out / 'config.yaml'}", flush=True)
        print(f"live view while it runs: http://127.0.0.1:{http_port}/", flush=True)
        collector = _Collector(broker, out / "heatmaps", truth)
        with (out / "agent.log").open("w") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(out / "config.yaml")],
                stdout=log,
                stderr=log,
            )
            try:
                complete = collector.wait(frames, timeout=120 + frames / fps)
                agent.send_signal(signal.SIGTERM)
                code = agent.wait(timeout=60)
            finally:
                if agent.poll() is None:
                    agent.kill()
                collector.close()
    right = sum(v.label == truth[(v.seq - 1) % len(truth)] for v in collector.verdicts)
    print(
        f"{len(collector.verdicts)} verdicts ({right} labelled as rendered), heatmaps in {out / 'heatmaps'}, "
        f"agent exit code {code}, log {out / 'agent.log'}"
    )
    return 0 if complete and code == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("demo"))
    parser.add_argument("--frames", type=int, default=28)
    parser.add_argument("--fps", type=float, default=4.0)
    args = parser.parse_args()
    try:
        return run_demo(args.bundle, args.out, args.frames, args.fps)
    except EdgeInspectorError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
