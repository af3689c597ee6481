"""Kept samples for relabelling, ROI geometry, and the schemas printed for integrators."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge_inspector.cli import main
from edge_inspector.config import SamplesConfig
from edge_inspector.preprocess import InputSpec, crop_box, crop_roi
from edge_inspector.samples import SampleKeeper


def test_samples_are_kept_in_the_calibration_layout_and_bounded(tmp_path: Path) -> None:
    keeper = SampleKeeper(SamplesConfig(folder=tmp_path / "kept", max_files=3, low_confidence=0.4))
    assert keeper.wanted(is_defect=True, confidence=0.9)
    assert keeper.wanted(is_defect=False, confidence=0.3)
    assert not keeper.wanted(is_defect=False, confidence=0.9)
    image = np.zeros((20, 30, 3), np.uint8)
    for seq, label in enumerate(["short", "spur", "short", "ok", "spur"], start=1):
        keeper.save(image, label, seq, "20261129T101500")
    kept = sorted(p.relative_to(tmp_path / "kept").as_posix() for p in (tmp_path / "kept").glob("*/*.png"))
    assert kept == [
        "ok/20261129T101500_000000004.png",
        "short/20261129T101500_000000003.png",
        "spur/20261129T101500_000000005.png",
    ]
    assert not SampleKeeper(SamplesConfig()).wanted(is_defect=True, confidence=1.0)


def test_samples_never_delete_files_the_agent_did_not_write(tmp_path: Path) -> None:
    folder = tmp_path / "kept"
    (folder / "short").mkdir(parents=True)
    labelled = [folder / "short" / "board-17.png", folder / "short" / "20261129T101500_12.png"]
    for path in labelled:
        path.write_bytes(b"an engineer's labelled image")
    keeper = SampleKeeper(SamplesConfig(folder=folder, max_files=2))
    image = np.zeros((8, 8, 3), np.uint8)
    for seq in range(1, 6):
        keeper.save(image, "short", seq, "20261129T101500")
    assert all(p.read_bytes() == b"an engineer's labelled image" for p in labelled)
    ours = sorted(p.name for p in (folder / "short").glob("*_0*.png"))
    assert ours == ["20261129T101500_000000004.png", "20261129T101500_000000005.png"]
    # a restart counts what it wrote before, and still only that
    SampleKeeper(SamplesConfig(folder=folder, max_files=1)).save(image, "short", 6, "20261129T101501")
    assert all(p.exists() for p in labelled)
    assert len(list((folder / "short").glob("*_0*.png"))) == 1


def test_roi_and_the_crop_the_model_sees() -> None:
    frame = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    roi = crop_roi(frame, (150, 40, 100, 100))  # clipped at the right edge
    assert roi.shape == (60, 50, 3) and np.array_equal(roi, frame[40:100, 150:200])
    with pytest.raises(ValueError, match="outside"):
        crop_roi(frame, (250, 0, 10, 10))
    assert crop_box(480, 640, InputSpec(size=224, resize=256)) == (109, 30, 529, 450)  # 420 px square, centred


def test_schema_command_prints_every_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    assert set(schemas) == {"Verdict", "Status", "Trigger", "InspectResult", "BundleManifest"}
    assert schemas["InspectResult"]["properties"]["verdict"] == {"$ref": "#/$defs/Verdict"}
    verdict = schemas["Verdict"]
    assert {"seq", "part_id", "captured_at", "label", "is_defect", "score", "probabilities", "model"} <= set(
        verdict["properties"]
    )
    assert (
        verdict["properties"]["schema_version"]["enum"] == [2, 3]
        and verdict["properties"]["schema_version"]["default"] == 3
    )  # a verdict spooled before an upgrade goes out after it as it was
    assert {"cameras", "reload_error", "verdicts"} <= set(schemas["Status"]["properties"])
    states = schemas["Status"]["$defs"]["CameraState"]["enum"]  # the enum the agent uses, not a copy
    assert states == ["connecting", "streaming", "reconnecting", "ended", "stopped"]
    assert "camera" in schemas["Trigger"]["properties"] and schemas["Trigger"]["required"] == ["part_id"]
