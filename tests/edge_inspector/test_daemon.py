"""The agent end to end: a real Mosquitto, a real video, the daemon as a real process."""

import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from agent_process import STATION, agent_config, start_agent, statuses_of, stop_agent, verdicts_of, video
from mqtt_broker import MosquittoBroker, Subscriber, free_port
from prometheus_client.parser import text_string_to_metric_families

from edge_inspector.bundle import load_bundle, write_manifest
from trainer.synth.video import render_frames


def test_video_to_mqtt_end_to_end(tmp_path: Path, tiny_bundle: Path) -> None:
    metrics_port = free_port()
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = agent_config(tmp_path, tiny_bundle, broker, video(tmp_path, 14), http={"port": metrics_port})
        agent = start_agent(config, tmp_path)
        try:
            sub.wait_until(lambda ms: len(verdicts_of(ms)) >= 14, timeout=60)
            sub.wait_until(lambda ms: any(s.cameras[0].state == "ended" for s in statuses_of(ms)), timeout=10)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
            assert families["edge_inspector_inferred"].type == "counter"
            assert samples["edge_inspector_inferred_total", ()] == 14
            assert sum(s.value for s in families["edge_inspector_verdicts"].samples) == 14  # by label
            assert samples["edge_inspector_stage_seconds_count", (("stage", "total"),)] == 14  # one per verdict
            assert samples["edge_inspector_broker_connected", ()] == 1
            assert samples["edge_inspector_camera_state", (("camera", "cam0"), ("state", "ended"))] == 1
            (model,) = families["edge_inspector_model_info"].samples
            assert model.labels["name"] == "tiny" and model.labels["precision"] == "int8"
            assert stop_agent(agent, tmp_path) == 0
        finally:
            agent.kill()
        received = sub.wait_until(lambda ms: any(s.state == "offline" for s in statuses_of(ms)), timeout=10)

    verdicts = verdicts_of(received)
    assert [v.seq for v in verdicts] == list(range(1, 15))
    assert all(v.station == STATION and v.camera == "cam0" and v.part_id is None for v in verdicts)
    manifest = load_bundle(tiny_bundle).manifest
    for v in verdicts:
        assert set(v.probabilities) == set(manifest.classes) and abs(sum(v.probabilities.values()) - 1) < 1e-3
        assert v.model.name == "tiny" and v.model.precision == "int8" and v.model.backend == "onnxruntime"
        assert v.model.sha256 == manifest.files["model.int8.u8s8.onnx"].sha256
        assert v.is_defect == (v.score >= v.threshold) and v.heatmap
    heatmaps = [m for m in received if m.topic.endswith("/heatmap")]
    assert len(heatmaps) == 14
    for message, verdict in zip(heatmaps, verdicts, strict=True):
        assert message.properties["ContentType"] == "image/jpeg"
        assert ["seq", str(verdict.seq)] in [list(p) for p in message.properties["UserProperty"]]
        picture = cv2.imdecode(np.frombuffer(message.payload, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (128, 128, 3)
    statuses = statuses_of(received)
    assert statuses[0].state == "online" and statuses[0].model is not None
    final = statuses[-1]
    assert final.state == "offline" and final.counters["inferred"] == 14
    assert final.counters["captured"] == 14 and final.counters["dropped"] == 0
    assert final.cameras[0].state == "ended" and final.cameras[0].counters["captured"] == 14
    assert final.spool["verdicts"] == 0


def test_triggered_mode_carries_part_ids(tmp_path: Path, tiny_bundle: Path) -> None:
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/verdict") as sub:
        config = agent_config(
            tmp_path, tiny_bundle, broker, video(tmp_path, 10), camera={"mode": "triggered"}, mqtt={"commands": True}
        )
        agent = start_agent(config, tmp_path)
        try:
            trigger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            trigger.connect(broker.host, broker.port)
            trigger.loop_start()
            # The agent subscribes to cmd/trigger as it connects, then publishes "online" on that connection:
            # once "online" is here, the broker has the subscription.
            with Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/status") as status:
                online = status.wait_until(lambda ms: any(s.state == "online" for s in statuses_of(ms)), timeout=60)
            assert any(s.state == "online" for s in statuses_of(online))
            for part in ("PCB-001", "PCB-002", "not json", "PCB-003"):
                payload = part if part == "not json" else json.dumps({"part_id": part})
                trigger.publish(f"edge-inspector/{STATION}/cmd/trigger", payload, qos=1).wait_for_publish(5)
            received = sub.wait_for(3, timeout=30)
            trigger.loop_stop()
            trigger.disconnect()
            assert stop_agent(agent, tmp_path) == 0
        finally:
            agent.kill()
    verdicts = verdicts_of(received)
    assert [v.part_id for v in verdicts] == ["PCB-001", "PCB-002", "PCB-003"]
    assert "ignoring malformed trigger" in (tmp_path / "agent.log").read_text()


def _folder(tmp_path: Path, count: int, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for i, frame in enumerate(render_frames(count, size=64, seed=9, frame_size=128)[0]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def test_several_cameras_share_one_model_in_micro_batches(tmp_path: Path, tiny_bundle: Path) -> None:
    cameras = [
        {"name": "top", "source": str(video(tmp_path, 12)), "fps": 1000},
        {"name": "side", "source": str(_folder(tmp_path, 12, "side")), "fps": 1000, "roi": [0, 0, 64, 48]},
        # aimed at pixels its 128 px frames do not have: its frames fail, the others' verdicts go on
        {"name": "misaimed", "source": str(video(tmp_path, 5, "misaimed.avi")), "roi": [400, 400, 50, 50]},
    ]
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = agent_config(tmp_path, tiny_bundle, broker, None, cameras=cameras, model={"max_batch": 4})
        agent = start_agent(config, tmp_path)
        try:
            sub.wait_until(
                lambda ms: (
                    any(all(c.state == "ended" for c in s.cameras) for s in statuses_of(ms))
                    and len(verdicts_of(ms)) >= 24
                ),
                timeout=90,
            )
            assert stop_agent(agent, tmp_path) == 0
        finally:
            agent.kill()
        received = sub.wait_until(lambda ms: any(s.state == "offline" for s in statuses_of(ms)), timeout=10)
    verdicts = verdicts_of(received)
    assert sorted(v.seq for v in verdicts) == list(range(1, 25))  # one seq per station, no gap
    assert sorted(v.camera for v in verdicts) == ["side"] * 12 + ["top"] * 12
    assert max(v.latency.batch for v in verdicts) >= 2  # both cameras' frames inferred together
    shapes = {}
    for message in (m for m in received if m.topic.endswith("/heatmap")):
        seq = int(dict(message.properties["UserProperty"])["seq"])
        camera = next(v.camera for v in verdicts if v.seq == seq)
        shapes.setdefault(camera, set()).add(cv2.imdecode(np.frombuffer(message.payload, np.uint8), 1).shape)
    assert shapes == {"top": {(128, 128, 3)}, "side": {(48, 64, 3)}}  # each camera's own ROI
    final = statuses_of(received)[-1]
    assert [(c.name, c.state, c.counters["captured"], c.counters["failed_frames"]) for c in final.cameras] == [
        ("top", "ended", 12, 0),
        ("side", "ended", 12, 0),
        ("misaimed", "ended", 5, 5),
    ]
    assert final.counters["captured"] == 29 and final.counters["inferred"] == 24
    log = (tmp_path / "agent.log").read_text()
    assert log.count("camera misaimed: frames cannot be inspected: roi (400, 400, 50, 50) lies outside") == 1


def test_a_trigger_goes_to_the_camera_it_names_or_to_every_triggered_camera(tmp_path: Path, tiny_bundle: Path) -> None:
    cameras = [
        {"name": name, "source": str(video(tmp_path, 6, f"{name}.avi")), "mode": "triggered"}
        for name in ("left", "right")
    ]
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = agent_config(tmp_path, tiny_bundle, broker, None, cameras=cameras, mqtt={"commands": True})
        agent = start_agent(config, tmp_path)
        try:
            sub.wait_until(lambda ms: len(statuses_of(ms)) >= 1, timeout=60)  # connected and subscribed
            trigger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            trigger.connect(broker.host, broker.port)
            trigger.loop_start()
            for payload in ({"part_id": "B1"}, {"part_id": "B2", "camera": "right"}, {"part_id": "B3", "camera": "x"}):
                topic = f"edge-inspector/{STATION}/cmd/trigger"
                trigger.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
            received = sub.wait_until(
                lambda ms: len(verdicts_of(ms)) >= 3 and statuses_of(ms)[-1].counters.get("bad_commands") == 1,
                timeout=30,
            )
            trigger.loop_stop()
            trigger.disconnect()
            assert stop_agent(agent, tmp_path) == 0
        finally:
            agent.kill()
    got = sorted((v.part_id, v.camera) for v in verdicts_of(received))
    assert got == [("B1", "left"), ("B1", "right"), ("B2", "right")]
    assert "no triggered camera 'x'" in (tmp_path / "agent.log").read_text()


def test_reload_good_and_corrupt_bundle(tmp_path: Path, tiny_bundle: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = agent_config(
            tmp_path, bundle, broker, video(tmp_path, 6), camera={"loop": True, "fps": 5}, mqtt={"commands": True}
        )
        agent = start_agent(config, tmp_path)
        try:
            sub.wait_until(lambda ms: len(verdicts_of(ms)) >= 2, timeout=60)
            manifest = load_bundle(bundle).manifest
            write_manifest(bundle, manifest.model_copy(update={"model_version": "2.0.0"}))
            agent.send_signal(signal.SIGHUP)
            sub.wait_until(lambda ms: any(v.model.version == "2.0.0" for v in verdicts_of(ms)), timeout=30)

            model_file = bundle / "model.int8.u8s8.onnx"
            data = bytearray(model_file.read_bytes())
            data[len(data) // 3] ^= 0xFF
            model_file.write_bytes(bytes(data))
            reloader = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            reloader.connect(broker.host, broker.port)
            reloader.loop_start()
            reloader.publish(f"edge-inspector/{STATION}/cmd/reload", b"{}", qos=1).wait_for_publish(5)
            received = sub.wait_until(lambda ms: any(s.reload_error for s in statuses_of(ms)), timeout=30)
            count = len(verdicts_of(received))
            received = sub.wait_until(lambda ms: len(verdicts_of(ms)) >= count + 3, timeout=30)  # still inspecting
            reloader.loop_stop()
            reloader.disconnect()
            assert stop_agent(agent, tmp_path) == 0
        finally:
            agent.kill()
    refused = next(s for s in statuses_of(received) if s.reload_error)
    assert "model.int8.u8s8.onnx: sha256 mismatch" in refused.reload_error
    assert refused.model is not None and refused.model.version == "2.0.0"
    assert verdicts_of(received)[-1].model.version == "2.0.0"
    assert refused.counters["reloads"] == 1 and refused.counters["reload_failures"] == 1


def test_start_up_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("station: x\ncamera: {source: 0}\nmodel: {bundle: /nowhere}\nmqtt: {port: 99999}\n")
    run = subprocess.run(
        [sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 2 and "mqtt.port" in run.stderr and "Traceback" not in run.stderr
    bad.write_text(f"station: x\ncamera: {{source: {tmp_path}}}\nmodel: {{bundle: {tmp_path / 'nowhere'}}}\n")
    run = subprocess.run(
        [sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 2 and "bundle directory not found" in run.stderr and "Traceback" not in run.stderr


def test_last_will_names_station_and_model_not_a_stale_uptime(tmp_path: Path, tiny_bundle: Path) -> None:
    with MosquittoBroker() as broker, Subscriber(broker.host, broker.port, f"edge-inspector/{STATION}/#") as sub:
        config = agent_config(tmp_path, tiny_bundle, broker, video(tmp_path, 10), camera={"loop": True, "fps": 5})
        agent = start_agent(config, tmp_path)
        try:
            sub.wait_until(lambda ms: len(verdicts_of(ms)) >= 3, timeout=60)
            agent.send_signal(signal.SIGKILL)  # no clean disconnect: the broker publishes the will
            agent.wait(10)
            received = sub.wait_until(lambda ms: any(s.state == "offline" for s in statuses_of(ms)), timeout=20)
        finally:
            agent.kill()
    (will,) = [s for s in statuses_of(received) if s.state == "offline"]
    assert will.station == STATION and will.model is not None and will.model.name == "tiny"
    assert will.uptime_s is None and will.counters == {} and not will.broker_connected
    assert [(c.name, c.state, c.counters) for c in will.cameras] == [("cam0", None, {})]
