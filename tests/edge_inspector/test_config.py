"""Config files: valid ones load, each kind of mistake gives one clear line naming file and field."""

from pathlib import Path

import pytest

from edge_inspector.cli import main
from edge_inspector.config import CaptureMode, HeatmapPolicy, load_config
from edge_inspector.errors import ConfigError
from edge_inspector.messages import topics

GOOD = """
station: line3-aoi
camera:
  source: rtsp://cam.local/stream
  roi: [100, 50, 640, 480]
model:
  bundle: /opt/edge-inspector/bundles/pcb
mqtt:
  host: broker.local
  username: aoi
  password_file: {password}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def password(tmp_path: Path) -> Path:
    path = tmp_path / "mqtt.pw"
    path.write_text("s3cret\n")
    return path


def test_good_config_with_defaults(tmp_path: Path, password: Path) -> None:
    config = load_config(_write(tmp_path, GOOD.format(password=password)), environ={})
    assert config.station == "line3-aoi" and [c.roi for c in config.cameras] == [(100, 50, 640, 480)]
    assert config.cameras[0].name == "cam0" and config.cameras[0].mode is CaptureMode.FREE_RUNNING
    assert config.mqtt.heatmap is HeatmapPolicy.DEFECTS
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config) and "s3cret" not in config.model_dump_json()
    assert topics(config.mqtt.prefix, config.station)["verdict"] == "edge-inspector/line3-aoi/verdict"


def test_environment_overrides_fields(tmp_path: Path, password: Path) -> None:
    environ = {
        "EDGE_INSPECTOR__MQTT__HOST": "10.1.1.9",
        "EDGE_INSPECTOR__MQTT__PORT": "8883",
        "EDGE_INSPECTOR__CAMERA__FPS": "2.5",
        "EDGE_INSPECTOR_MQTT_PASSWORD": "from-env",
    }
    text = GOOD.format(password=password).replace(f"  password_file: {password}\n", "")
    config = load_config(_write(tmp_path, text), environ=environ)
    assert (config.mqtt.host, config.mqtt.port, config.cameras[0].fps) == ("10.1.1.9", 8883, 2.5)
    assert config.mqtt.password.get_secret_value() == "from-env"


def test_several_cameras_one_model(tmp_path: Path) -> None:
    text = (
        "station: a\nmodel: {bundle: /b}\nmqtt: {commands: true}\ncameras:\n"
        "  - {name: top, source: rtsp://cam-top/stream, roi: [0, 0, 640, 480]}\n"
        "  - {name: bottom, source: 1, mode: triggered, fps: 2}\n"
    )
    config = load_config(_write(tmp_path, text), environ={})
    assert [(c.name, c.mode, c.roi) for c in config.cameras] == [
        ("top", CaptureMode.FREE_RUNNING, (0, 0, 640, 480)),
        ("bottom", CaptureMode.TRIGGERED, None),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("station: a\ncamera: {source: 0}\n", "model: Field required"),
        ("station: 'bad station!'\ncamera: {source: 0}\nmodel: {bundle: /b}\n", "station: String should match"),
        ("station: a\ncamera: {source: 0, fps: -1}\nmodel: {bundle: /b}\n", "camera.fps"),
        ("station: a\ncamera: {source: 0, roi: [0, 0, 0, 10]}\nmodel: {bundle: /b}\n", "camera.roi"),
        ("station: a\ncameras: [{source: 0}, {source: 1, fps: 0}]\nmodel: {bundle: /b}\n", "cameras.1.fps"),
        ("station: a\ncameras: [{source: 0}, {source: 1}]\nmodel: {bundle: /b}\n", "its own name"),
        ("station: a\ncameras: []\nmodel: {bundle: /b}\n", "cameras: List should have at least 1"),
        ("station: a\ncamera: {source: 0}\ncameras: [{source: 1}]\nmodel: {bundle: /b}\n", "not both"),
        ("station: a\nmodel: {bundle: /b}\n", "cameras: Field required"),
        ("station: a\ncamera: {source: 0}\nmodel: {bundle: /b, precision: int4}\n", "model.precision"),
        ("station: a\ncamera: {source: 0}\nmodel: {bundle: /b}\nmqtt: {prot: 1883}\n", "mqtt.prot: Extra inputs"),
        ("station: a\ncamera: {source: 0}\nmodel: {bundle: /b}\nmqtt: {prefix: 'a/#'}\n", "mqtt.prefix"),
        ("station: a\ncamera: {source: 0, mode: triggered}\nmodel: {bundle: /b}\n", "needs mqtt.commands"),
        ("station: a\ncamera: {source: 0}\nmodel: {bundle: /b}\nmqtt: {password: x}\n", "not read from the file"),
        ("station: a\ncamera: {source: 0}\nmodel: {bundle: /b}\nmqtt: {password_file: /nope}\n", "cannot read /nope"),
        ("station: a\ncamera: {source: 0}\nmodel: {bundle: /b}\nhealth: {prometheus_port: 9100}\n", "set http.port"),
        ("station: a\ncamera: {source: 0, name: http}\nmodel: {bundle: /b}\n", "POST /inspect; pick another"),
        ("station: a\ncamera: {source: 0}\nmodel: {bundle: /b}\nhttp: {port: 0}\n", "http.port"),
        ("station: a\ncamera: {source: 0}\nmodel: {bundle: /b}\nhttp: {token: x}\n", "use http.token_file"),
        ("station: a\ncamera: {source: 0}\nmodel: {bundle: /b}\nhttp: {token_file: /nope}\n", "cannot read /nope"),
        ("station: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "mapping of settings"),
    ],
)
def test_bad_configs_name_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_http_token_comes_from_its_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("  t0ken \n")
    text = f"station: a\ncamera: {{source: 0}}\nmodel: {{bundle: /b}}\nhttp: {{port: 8080, token_file: {token}}}\n"
    config = load_config(_write(tmp_path, text), environ={})
    assert config.http.token is not None and config.http.token.get_secret_value() == "t0ken"
    assert "t0ken" not in repr(config) and "t0ken" not in config.model_dump_json()
    token.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(_write(tmp_path, text), environ={})


def test_check_config_cli(tmp_path: Path, password: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, GOOD.format(password=password))
    assert main(["check-config", str(good)]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edge-inspector: error:") and "config file not found" in err and "Traceback" not in err
