"""The systemd integration: sd_notify, the unit file, the example config and the environment file."""

from __future__ import annotations

import configparser
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge_inspector import systemd
from edge_inspector.config import AgentConfig, SpoolConfig, load_config

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edge-inspector.service"
ENV_FILE = REPO / "systemd" / "edge-inspector.env"
EXAMPLE = REPO / "systemd" / "config.example.yaml"
INSTALL = REPO / "deploy" / "install" / "install.sh"
EXEC_START = "/opt/edge-inspector/venv/bin/edge-inspector"
JETSON_PIPELINE = (
    "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1 ! nvvidconv ! "
    "video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
)


# --- sd_notify ---------------------------------------------------------------


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's, named in ``$NOTIFY_SOCKET``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = tmp_path / "notify.sock"
        if len(os.fsencode(path)) >= 108:  # sun_path limit
            pytest.skip(f"tmp_path too long for an AF_UNIX socket path: {path}")
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    else:
        if not sys.platform.startswith("linux"):
            pytest.skip("the abstract socket namespace is Linux-only")
        name = f"edge-inspector-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    sock.settimeout(5)
    with sock:
        yield sock


def test_notify_sends_the_state_as_one_datagram(notify_socket: socket.socket) -> None:
    assert systemd.notify("READY=1\nSTATUS=warming up") is True
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=warming up"


def test_helpers_send_exact_bytes(notify_socket: socket.socket) -> None:
    assert systemd.ready()
    assert systemd.status("inspecting: 4.0 fps\nqueue 0")
    assert systemd.watchdog_ping()
    assert systemd.stopping()
    received = [notify_socket.recv(4096) for _ in range(4)]
    assert received == [b"READY=1", b"STATUS=inspecting: 4.0 fps queue 0", b"WATCHDOG=1", b"STOPPING=1"]


@pytest.mark.parametrize("value", [None, ""])
def test_notify_outside_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert systemd.notify("READY=1") is False
    assert systemd.ready() is False
    assert systemd.watchdog_ping() is False


@pytest.mark.parametrize("target", ["missing/notify.sock", "@edge-inspector-test-nobody-listens"])
def test_notify_failure_is_logged_not_raised(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", target if target.startswith("@") else str(tmp_path / target))
    with caplog.at_level(logging.DEBUG, logger="edge_inspector.systemd"):
        assert systemd.notify("WATCHDOG=1") is False
    assert any("sd_notify" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("60000000", None, 30.0),
        ("60000000", "self", 30.0),
        ("1000000", None, 0.5),
        ("60000000", "other", None),
        ("60000000", "not-a-pid", None),
        (None, None, None),
        ("", None, None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(name, value)
    assert systemd.watchdog_interval() == expected


# --- the unit file -----------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def _unit_values(key: str) -> list[str]:
    """Every value of a key that systemd accepts many times (configparser keeps the last)."""
    return [line.split("=", 1)[1].strip() for line in UNIT.read_text().splitlines() if line.startswith(key + "=")]


def _verify(unit: Path) -> tuple[int, list[str]]:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    # `verify` also loads the host's units that ours names (network-online.target,
    # multi-user.target) and prints whatever is wrong with *those* files,
    # prefixed with their path: that is the host's business, not ours. Lines
    # about our copy, or without a file prefix, are kept.
    other_unit = re.compile(r"^/\S+:\d+: ")
    ours = [line for line in lines if str(unit) in line or not other_unit.match(line)]
    return result.returncode, ours


def _verifiable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at a binary that exists here (verify checks it)."""
    true = shutil.which("true") or sys.executable
    copy = tmp_path / "edge-inspector.service"
    copy.write_text((text or UNIT.read_text()).replace(f"ExecStart={EXEC_START} ", f"ExecStart={true} "))
    return copy


needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    copy = _verifiable_copy(tmp_path)
    assert EXEC_START not in copy.read_text().split("ExecReload")[0]
    returncode, output = _verify(copy)
    assert returncode == 0, output
    assert not [line for line in output if re.search(r"Unknown|Invalid|Failed|[Ii]gnoring", line)], output


@needs_systemd_analyze
def test_verify_check_catches_mistakes(tmp_path: Path) -> None:
    """The test above would notice: verify exits 0 on unknown keys, only the text says so."""
    broken = UNIT.read_text().replace("UMask=0027", "UMask=0027\nWatchDogSec=60\nDeviceAllow=video rw")
    returncode, output = _verify(_verifiable_copy(tmp_path, broken))
    text = "\n".join(output)
    assert "Unknown key" in text
    assert "Invalid device" in text


def test_unit_settings() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == f"{EXEC_START} run --config /etc/edge-inspector/config.yaml"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["EnvironmentFile"] == "-/etc/edge-inspector/edge-inspector.env"
    assert service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) > 0
    assert int(service["TimeoutStartSec"]) >= 300
    assert service["User"] == service["Group"] == "edge-inspector"
    assert "video" in service["SupplementaryGroups"].split()
    assert service["ProtectSystem"] == "strict"
    assert service["MemoryDenyWriteExecute"] == "false"
    assert service["DevicePolicy"] == "closed"
    assert "char-video4linux rw" in _unit_values("DeviceAllow")
    assert "char-nvidia* rw" in _unit_values("DeviceAllow")
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= set(unit["Unit"])
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_lets_the_agent_write_where_the_config_says() -> None:
    service = _unit()["Service"]
    writable = [Path(p.lstrip("-")) for p in service["ReadWritePaths"].split()]
    writable += [Path("/var/lib") / d for d in service["StateDirectory"].split()]
    example = yaml.safe_load(EXAMPLE.read_text())
    for path in (SpoolConfig().path, Path(example["spool"]["path"]), Path(example["samples"]["folder"])):
        assert any(path.is_relative_to(w) for w in writable), f"{path} is read-only under ProtectSystem=strict"
    # The stop deadline leaves the agent time to drain and flush.
    assert int(service["TimeoutStopSec"]) > AgentConfig.model_fields["drain_timeout_s"].default
    assert int(service["TimeoutStopSec"]) > example["drain_timeout_s"]


# --- the example config and the environment file -------------------------------


def test_example_config_validates(example_copy: Path) -> None:
    config = load_config(example_copy, environ={})  # no EDGE_INSPECTOR__ overrides from this shell
    assert config.station == "pcb-line2-aoi1"
    assert [c.name for c in config.cameras] == ["aoi-top", "aoi-bottom"]  # the example shows two cameras
    assert all(str(c.source).startswith("rtsp://") for c in config.cameras)
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "s3cret"
    assert config.mqtt.tls is not None
    assert config.model.bundle.is_relative_to("/opt/edge-inspector/bundles")


def test_example_config_covers_every_field() -> None:
    text = EXAMPLE.read_text()
    for name, field in AgentConfig.model_fields.items():
        assert re.search(rf"^{name}:", text, re.M), name
        section = field.annotation
        if typing.get_origin(section) is list:  # cameras: the fields of one item
            (section,) = typing.get_args(section)
        if isinstance(section, type) and hasattr(section, "model_fields"):
            for sub in section.model_fields:
                if section.model_fields[sub].exclude:
                    continue  # mqtt.password: never read from the file
                assert re.search(rf"^\s+#?\s*{sub}:", text, re.M), f"{name}.{sub}"


def test_example_jetson_pipeline_is_valid(example_copy: Path) -> None:
    commented = [line for line in EXAMPLE.read_text().splitlines() if "nvarguscamerasrc" in line]
    assert len(commented) == 1
    source = yaml.safe_load(commented[0].strip().lstrip("#"))["source"]
    assert source == JETSON_PIPELINE
    raw = yaml.safe_load(example_copy.read_text())
    raw["cameras"][0]["source"] = source
    example_copy.write_text(yaml.safe_dump(raw))
    assert load_config(example_copy, environ={}).cameras[0].source == JETSON_PIPELINE


def test_env_file_overrides_name_real_fields(example_copy: Path) -> None:
    """Every EDGE_INSPECTOR__ example, uncommented, still gives a valid config."""
    examples = dict(
        line.lstrip("#").split("=", 1)
        for line in ENV_FILE.read_text().splitlines()
        if line.lstrip("#").startswith("EDGE_INSPECTOR__")
    )
    assert "EDGE_INSPECTOR__MQTT__HOST" in examples
    config = load_config(example_copy, environ=examples)
    assert config.mqtt.host == examples["EDGE_INSPECTOR__MQTT__HOST"]
    assert config.cameras[0].source == examples["EDGE_INSPECTOR__CAMERAS__0__SOURCE"]
    assert config.cameras[1].source == "rtsp://10.20.0.32:554/Streaming/Channels/101"
    assert "EDGE_INSPECTOR_MQTT_PASSWORD=" in ENV_FILE.read_text()
    active = [line for line in ENV_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert not [line for line in active if "PASSWORD" in line or line.startswith("EDGE_INSPECTOR")]
