"""The agent as a real process for the tests: its config, a video to inspect, start and stop, its messages."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mqtt_broker import MosquittoBroker, Received

from edge_inspector.messages import Status, Verdict
from trainer.synth.video import render_frames, write_video

__all__ = ["STATION", "agent_config", "start_agent", "statuses_of", "stop_agent", "verdicts_of", "video"]

STATION = "aoi-7"


def video(tmp_path: Path, count: int, name: str = "line.avi") -> Path:
    """A video file of ``count`` synthetic boards passing under a camera (128 px frames)."""
    frames, _ = render_frames(count, size=64, seed=5, frame_size=128)
    return write_video(tmp_path / name, frames)


def agent_config(
    tmp_path: Path, bundle: Path, broker: MosquittoBroker, source: Path | None, **sections: dict | list
) -> Path:
    """The agent's config: one camera on ``source``, or ``cameras=[...]`` instead; ``sections`` update the rest."""
    config = {
        "station": STATION,
        "camera": {"source": str(source), "fps": 10},
        "model": {"bundle": str(bundle), "backend": "onnxruntime", "precision": "int8", "device": "cpu", "threads": 1},
        "mqtt": {"host": broker.host, "port": broker.port, "heatmap": "always", "heatmap_qos": 1},
        "spool": {"path": str(tmp_path / "spool.sqlite")},
        "health": {"status_interval_s": 1},
        "drain_timeout_s": 10,
    }
    for key, values in sections.items():
        if key == "cameras":
            del config["camera"]
            config[key] = values
        else:
            config[key] = {**config.get(key, {}), **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_agent(config: Path, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``edge-inspector run`` as a real process, logging to ``tmp_path/agent.log``."""
    log = (tmp_path / "agent.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(config)], stdout=log, stderr=log, env=env
    )


def stop_agent(agent: subprocess.Popen, tmp_path: Path) -> int:
    """SIGTERM, then its exit status (the test fails when it does not stop within 30 s)."""
    agent.send_signal(signal.SIGTERM)
    try:
        return agent.wait(timeout=30)
    except subprocess.TimeoutExpired:
        agent.kill()
        pytest.fail("agent did not stop within 30 s of SIGTERM:\n" + (tmp_path / "agent.log").read_text()[-3000:])


def verdicts_of(messages: list[Received]) -> list[Verdict]:
    """The verdicts among received messages."""
    return [Verdict.model_validate_json(m.payload) for m in messages if m.topic.endswith("/verdict")]


def statuses_of(messages: list[Received]) -> list[Status]:
    """The statuses among received messages."""
    return [Status.model_validate_json(m.payload) for m in messages if m.topic.endswith("/status")]
