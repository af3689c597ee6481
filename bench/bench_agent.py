"""The agent at the model's pace: verdicts/s over MQTT against the raw backend, one camera then four.

In one run, with one bundle and one thread count:

1. the raw backend: ``backend.infer`` on prepared batches of 1 (and of
   ``max_batch``), in this process, while the agent is frozen, in windows
   between the agent's (a shared machine's speed drifts within minutes, so
   baseline and agent are interleaved; the baseline is their median);
2. the agent as a real process (``edge-inspector run``), each camera a
   folder of JPEG frames replayed faster than the model, heatmaps on
   defects, a local Mosquitto, and a subscriber here counting the verdicts
   it receives and their age (capture time to receipt: the broker forwards
   a QoS 1 message as it acknowledges it);
3. the cost of each stage of a frame's way, timed alone on the same frames.

    .venv/bin/python -m bench.bench_agent [--work DIR] [--seconds 20] [--cameras 1 4] [--threads N]

Broker and subscriber share the machine's cores with the agent, as they
would not on a line; the ratio is thus a lower bound.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import yaml

from bench.agent_stages import STATION, stage_costs
from deploy.bench import cpu_flags, make_bench_bundle
from edge_inspector.backends import BackendKind, BackendOptions, backend_class
from edge_inspector.bundle import Precision, load_bundle
from edge_inspector.messages import Verdict, topics
from edge_inspector.preprocess import resize_and_crop
from edge_inspector.priority import default_inference_threads
from examples.local_broker import LocalBroker
from trainer.synth.video import render_frames

FRAME_SIZE = 480  # camera pixels per side: the model sees 224 of them after resize and crop
AGENT_WINDOW_S = 4.0  # the agent runs this long between two raw windows
RAW_WINDOW_S = 1.0  # each batch size's raw window


@dataclass(frozen=True)
class AgentRun:
    """One agent run: how many cameras, and what came out."""

    cameras: int
    verdicts_per_second: float
    mean_batch: float
    raw_batch: int
    raw_images_per_second: float
    ratio: float
    ratio_to_batch_1: float
    latency_p50_ms: float
    latency_p99_ms: float
    heatmap_share: float
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


def _frames(folder: Path, count: int) -> list[Path]:
    """JPEG frames of synthetic boards, a camera's view of 480 x 480 pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    images, _ = render_frames(count, size=224, seed=7, frame_size=FRAME_SIZE)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:04d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def raw_rate(backend_infer: Callable[[np.ndarray], object], batch: np.ndarray, seconds: float) -> float:
    """Images per second of back-to-back ``infer`` calls on one prepared batch."""
    for _ in range(3):
        backend_infer(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend_infer(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


class _Counter:
    """Subscribes to the station's verdicts and keeps (arrival time, payload); parsed later, not on the clock."""

    def __init__(self, broker: LocalBroker) -> None:
        self.received: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        self.client = broker.subscribe(topics("edge-inspector", STATION)["verdict"], self._message)

    def _message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        with self.lock:
            self.received.append((arrived, bytes(message.payload)))

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.count()} verdicts within {timeout} s")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def agent_run(
    bundle: Path,
    folder: Path,
    cameras: int,
    broker: LocalBroker,
    work: Path,
    args: argparse.Namespace,
    measure_raw: Callable[[], dict[int, float]],
) -> AgentRun:
    """Run the agent on ``cameras`` copies of the frame folder: verdicts/s and latency over ``args.seconds``.

    The agent runs in windows of ``AGENT_WINDOW_S``; after each, it is frozen
    (SIGSTOP) while ``measure_raw`` times the raw backend at each batch size,
    so baseline and agent see the same machine within seconds of each other.
    The ratio is the median over windows of the agent's rate to the raw rate
    at the batch size the agent ran (its mean batch, rounded), and also to batch 1.
    """
    run_dir = work / f"agent-{cameras}"
    run_dir.mkdir(exist_ok=True)
    config = {
        "station": STATION,
        "cameras": [{"name": f"cam{i}", "source": str(folder), "fps": 1000, "loop": True} for i in range(cameras)],
        "model": {
            "bundle": str(bundle),
            "backend": args.backend,
            "precision": args.precision,
            "threads": args.threads,
            "max_batch": args.max_batch,
        },
        "mqtt": {"host": broker.host, "port": broker.port, "heatmap": "defects"},
        "spool": {"path": str(run_dir / "spool.sqlite")},
        "health": {"status_interval_s": 5},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    counter = _Counter(broker)
    log = (run_dir / "agent.log").open("w")
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(run_dir / "config.yaml")],
        stdout=log,
        stderr=log,
    )
    windows: list[tuple[float, float]] = []
    raw_cycles: list[dict[int, float]] = []
    try:
        counter.wait_for(30, timeout=120)  # warmed up and flowing
        for _ in range(max(1, round(args.seconds / AGENT_WINDOW_S))):
            start = time.time()
            time.sleep(AGENT_WINDOW_S)
            windows.append((start, time.time()))
            agent.send_signal(signal.SIGSTOP)
            time.sleep(0.3)  # what was on its way lands, outside the window
            raw_cycles.append(measure_raw())
            agent.send_signal(signal.SIGCONT)
            time.sleep(0.5)  # flowing again before the next window opens
    finally:
        agent.send_signal(signal.SIGCONT)
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
        counter.close()
        log.close()
    with counter.lock:
        received = list(counter.received)
    inside = [
        (arrived, Verdict.model_validate_json(payload))
        for arrived, payload in received
        if any(start <= arrived < end for start, end in windows)
    ]
    rate = len(inside) / sum(end - start for start, end in windows)
    window_rates = [sum(start <= a < end for a, _ in inside) / (end - start) for start, end in windows]
    # a frame captured before its window opened waited out a freeze: its age says nothing of the agent
    fresh = [(a, v) for a, v in inside if any(start <= v.captured_at.timestamp() < a for start, _ in windows)]
    ages = [(arrived - v.captured_at.timestamp()) * 1000 for arrived, v in fresh]
    verdicts = [v for _, v in inside]
    mean_batch = float(np.mean([v.latency.batch for v in verdicts]))
    raw_batch = min(raw_cycles[0], key=lambda size: abs(size - mean_batch))

    def ratio(size: int) -> float:
        return round(float(np.median([w / raw[size] for w, raw in zip(window_rates, raw_cycles, strict=True)])), 3)

    return AgentRun(
        cameras=cameras,
        verdicts_per_second=round(rate, 2),
        mean_batch=round(mean_batch, 2),
        raw_batch=raw_batch,
        raw_images_per_second=round(float(np.median([raw[raw_batch] for raw in raw_cycles])), 2),
        ratio=ratio(raw_batch),
        ratio_to_batch_1=ratio(1),
        latency_p50_ms=round(float(np.percentile(ages, 50)), 1),
        latency_p99_ms=round(float(np.percentile(ages, 99)), 1),
        heatmap_share=round(float(np.mean([v.heatmap for v in verdicts])), 3),
        preprocess_ms=round(float(np.median([v.latency.preprocess_ms for v in verdicts])), 2),
        inference_ms=round(float(np.median([v.latency.inference_ms / v.latency.batch for v in verdicts])), 2),
        postprocess_ms=round(float(np.median([v.latency.postprocess_ms for v in verdicts])), 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep the bundle and frames here (reused by later runs)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window of each agent run")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--threads", type=int, default=default_inference_threads(), help="default: the agent's, all cores but one"
    )
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--backend", default="openvino", choices=["openvino", "onnxruntime"])
    parser.add_argument("--precision", default="int8", choices=["int8", "fp16", "fp32"])
    parser.add_argument("--json", type=Path, default=Path("bench/results/agent-cpu.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        bundle = make_bench_bundle(work)
        paths = _frames(work / "frames", 48)
        spec = load_bundle(bundle).manifest.input
        prepared = np.stack([resize_and_crop(cv2.imread(str(p))[:, :, ::-1], spec) for p in paths[:8]])
        backend = backend_class(BackendKind(args.backend))(
            load_bundle(bundle), Precision(args.precision), BackendOptions(threads=args.threads, max_batch=8)
        )
        sizes = sorted({1, 2, args.max_batch})

        def measure_raw() -> dict[int, float]:
            return {size: raw_rate(backend.infer, prepared[:size], RAW_WINDOW_S) for size in sizes}

        with LocalBroker() as broker:
            runs = []
            for cameras in args.cameras:
                runs.append(agent_run(bundle, work / "frames", cameras, broker, work, args, measure_raw))
                print(runs[-1], flush=True)
            stages = stage_costs(bundle, paths, broker, work, args)
        described = backend.describe()
        backend.close()

    print(f"\nraw backend: {described['backend']} {described.get('variant', args.precision)}, {args.threads} threads")
    print(
        "\n| cameras | verdicts/s | mean batch | raw images/s at that batch | agent / raw | agent / raw batch 1 "
        "| p50 ms | p99 ms | heatmaps | prep ms | infer ms/img | post ms |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        print(
            f"| {r.cameras} | {r.verdicts_per_second:.1f} | {r.mean_batch:.2f} | {r.raw_images_per_second:.1f} "
            f"(batch {r.raw_batch}) | **{r.ratio:.1%}** | {r.ratio_to_batch_1:.1%} | {r.latency_p50_ms:.0f} | "
            f"{r.latency_p99_ms:.0f} | {r.heatmap_share:.0%} | {r.preprocess_ms:.2f} | {r.inference_ms:.2f} | "
            f"{r.postprocess_ms:.2f} |"
        )
    print("\n| stage | ms per frame |\n| --- | ---: |")
    for name, ms in stages.items():
        print(f"| {name} | {ms:.2f} |")
    print(f"\nCPU flags: {' '.join(cpu_flags()) or 'unknown'}; {os.cpu_count()} CPUs; {platform.processor() or '?'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": {"platform": platform.platform(), "cpu_flags": cpu_flags(), "cpus": os.cpu_count()},
                "backend": described,
                "threads": args.threads,
                "max_batch": args.max_batch,
                "seconds": args.seconds,
                "frame_size": FRAME_SIZE,
                "runs": [asdict(r) for r in runs],
                "stages_ms": stages,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
