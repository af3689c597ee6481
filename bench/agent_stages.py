"""The cost of each stage of a frame's way through the agent, each timed alone (part of ``bench.bench_agent``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from edge_inspector.backends import BackendKind, BackendOptions, backend_class
from edge_inspector.bundle import Precision, load_bundle
from edge_inspector.capture import Frame
from edge_inspector.config import HeatmapPolicy, MqttConfig
from edge_inspector.inspector import Inspector, heatmap_rule
from edge_inspector.outbox import Publisher, Spool
from edge_inspector.preprocess import crop_roi, resize_and_crop
from examples.local_broker import LocalBroker
from trainer.synth.video import write_video

__all__ = ["STATION", "per_call_ms", "stage_costs"]

STATION = "bench"


def per_call_ms(run: Callable[[], object], seconds: float = 2.0, warmup: int = 3) -> float:
    """Median milliseconds of one call, over ``seconds``."""
    for _ in range(warmup):
        run()
    samples, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return float(np.median(samples))


def stage_costs(bundle_dir: Path, paths: list[Path], broker: LocalBroker, work: Path, args: argparse.Namespace) -> dict:
    """Milliseconds per frame of each stage, each timed alone on the bench's frames."""
    bundle = load_bundle(bundle_dir)
    spec = bundle.manifest.input
    backend = backend_class(BackendKind(args.backend))(
        bundle, Precision(args.precision), BackendOptions(threads=args.threads, max_batch=args.max_batch)
    )
    inspector = Inspector(bundle, backend, rois={}, threshold=None, heatmap=heatmap_rule(HeatmapPolicy.ALWAYS))
    video = write_video(work / "stream.avi", [cv2.imread(str(p))[:, :, ::-1] for p in paths])
    capture = cv2.VideoCapture(str(video))

    def grab() -> None:
        if not capture.grab():
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            capture.grab()

    costs: dict[str, float] = {}
    costs["grab (live stream: MJPEG, FFmpeg)"] = per_call_ms(grab)
    costs["retrieve + to RGB (frames to inspect)"] = per_call_ms(
        lambda: cv2.cvtColor(capture.retrieve()[1], cv2.COLOR_BGR2RGB)
    )
    capture.release()
    cycle = iter(range(10**9))
    costs["read + decode (folder: JPEG)"] = per_call_ms(lambda: cv2.imread(str(paths[next(cycle) % len(paths)])))
    image = cv2.cvtColor(cv2.imread(str(paths[0])), cv2.COLOR_BGR2RGB)

    def preprocess() -> np.ndarray:
        return np.stack([resize_and_crop(crop_roi(image, None), spec)])

    batch = preprocess()
    costs["preprocess (ROI, resize, crop)"] = per_call_ms(preprocess)
    output = backend.infer(batch)
    costs["infer (batch 1)"] = per_call_ms(lambda: backend.infer(batch))
    costs["heatmap (overlay + JPEG)"] = per_call_ms(lambda: inspector.heatmap_jpeg(image, output.activation[0, 0]))
    (item,) = inspector.inspect([Frame(image, datetime.now(timezone.utc), 1)])
    backend.close()

    def verdict_json() -> bytes:
        return inspector.verdict(item, station=STATION, seq=1, heatmap=True).model_dump_json().encode()

    costs["verdict message (pydantic JSON)"] = per_call_ms(verdict_json)
    payload, jpeg = verdict_json(), item.heatmap_jpeg or b""
    spool = Spool(work / "stage-spool.sqlite", max_bytes=256 * 1024 * 1024)
    mqtt_config = MqttConfig(host=broker.host, port=broker.port)
    publisher = Publisher(mqtt_config, station=STATION, spool=spool, status_offline=b"{}")

    def spool_one() -> None:
        with publisher.batch() as messages:
            messages.next_seq()
            messages.add("verdict", payload)
            messages.add("heatmap", jpeg)

    costs["spool (one transaction: verdict + heatmap)"] = per_call_ms(spool_one)
    depth = spool.depth()
    start = time.perf_counter()
    publisher.start()  # sends everything spooled above
    deadline = time.monotonic() + 60
    while publisher.stats()["acked"] < depth["verdicts"] and time.monotonic() < deadline:
        time.sleep(0.01)
    sent = publisher.stats()["acked"]
    costs["publish (to the broker's ack, per message, pipelined)"] = (time.perf_counter() - start) * 1000 / max(1, sent)
    publisher.stop()
    spool.close()
    return {name: round(value, 3) for name, value in costs.items()}
