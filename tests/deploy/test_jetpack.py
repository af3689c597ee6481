"""The JetPack installer helper: requirements from the package's own metadata, and the box check."""

from importlib.metadata import requires
from pathlib import Path

import pytest

from deploy.install.jetpack import DISTRIBUTION, check, main, requirements


def test_requirements_select_extras_and_leave_opencv_and_tensorrt_to_jetpack() -> None:
    declared = [
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        'tomli>=2; python_version < "3.11"',
        'tensorrt>=10.0; extra == "tensorrt"',
        'pycuda>=2022.2; extra == "tensorrt"',
        "openvino>=2024.0 ; extra == 'openvino'",
        'Opencv_Contrib.Python; extra == "tensorrt"',
    ]
    assert requirements(declared, ["tensorrt"]) == [
        "numpy>=1.24",
        'tomli>=2; python_version < "3.11"',
        "pycuda>=2022.2",
    ]
    assert requirements(declared, ["openvino"]) == [
        "numpy>=1.24",
        'tomli>=2; python_version < "3.11"',
        "openvino>=2024.0",
    ]
    assert requirements(declared, []) == ["numpy>=1.24", 'tomli>=2; python_version < "3.11"']


def test_requirements_of_this_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "req.txt"
    assert main(["requirements", "--extras", "tensorrt", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    names = {line.split(">")[0].split(";")[0].strip() for line in lines}
    assert {"numpy", "pydantic", "paho-mqtt", "onnxruntime", "pycuda", "onnx"} <= names
    assert not names & {"opencv-python-headless", "tensorrt", "torch"}
    assert len(lines) == len(requirements(requires(DISTRIBUTION) or [], ["tensorrt"]))
    assert "left to JetPack" in capsys.readouterr().out


def test_check_on_this_machine_names_what_a_jetson_would_have(capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    has_gstreamer = "YES" in next((line for line in cv2.getBuildInformation().splitlines() if "GStreamer:" in line), "")
    problems = check(tensorrt=True)
    assert any("GStreamer" in p for p in problems) is not has_gstreamer
    try:
        import tensorrt  # noqa: F401
    except ImportError:  # not a Jetson: the check says what is missing and fails
        assert any("TensorRT is not installed" in p and "JetPack" in p for p in problems)
        assert main(["check", "--tensorrt"]) == 1
        assert "jetpack check: TensorRT is not installed" in capsys.readouterr().err
