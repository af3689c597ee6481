"""Integration: synth -> fit -> report, resume, evaluate, and the CLI's errors."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from trainer.checkpoint import RESUME_ONLY, load_checkpoint, save_checkpoint
from trainer.cli import main
from trainer.config import TrainConfig
from trainer.errors import CheckpointError
from trainer.fit import fit

REPORT_FILES = ("metrics.json", "history.csv", "curves.png", "confusion.png", "roc.png", "cam_grid.png", "report.html")


def test_fit_writes_every_report_file(trained_run: Path) -> None:
    for name in (*REPORT_FILES, "best.pt", "last.pt", "split.json", "config.json"):
        assert (trained_run / name).is_file() and (trained_run / name).stat().st_size > 0, name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["count"] == 7  # one validation image per class (6 each, 20 %)
    assert len(metrics["confusion_matrix"]) == 7
    assert set(metrics["per_class"]) >= {"ok", "missing_hole", "spurious_copper"}
    pointing = metrics["pointing"]  # every defect image of the synthetic split has its box
    assert pointing["images"] == 6 and pointing["cam_size"] == [4, 4]
    with (trained_run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert rows[0]["val_accuracy"] == "" and float(rows[0]["train_loss"]) > 0  # not validated (validate_from)
    assert metrics["checkpoint"]["epoch"] == 2
    # the report scores best.pt on the split that training validated it on: the same figures
    kept = rows[metrics["checkpoint"]["epoch"] - 1]
    assert float(kept["val_accuracy"]) == pytest.approx(metrics["accuracy"])
    assert float(kept["val_balanced_accuracy"]) == pytest.approx(metrics["balanced_accuracy"])
    page = (trained_run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "balanced accuracy" in page and "pointing" in page


def test_checkpoint_carries_what_deploy_needs(trained_run: Path) -> None:
    state = load_checkpoint(trained_run / "best.pt")
    assert state["classes"][0] == "missing_hole" and state["ok_class"] == "ok"
    assert state["input"] == {
        "size": 64,
        "resize": 73,
        "color_order": "RGB",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    assert state["arch"]["attention"] == ["layer3", "layer4"]
    assert len(state["dataset"]["fingerprint"]) == 64
    # best.pt is what an engineer keeps: weights and metadata; the optimizer state for --resume is in last.pt
    assert not set(RESUME_ONLY) & set(state) and set(RESUME_ONLY) <= set(load_checkpoint(trained_run / "last.pt"))
    assert (trained_run / "best.pt").stat().st_size < 0.6 * (trained_run / "last.pt").stat().st_size


def test_resume_continues_from_last_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    config.update(out=str(run), epochs=3, resume=True)
    result = fit(TrainConfig(**config))
    assert result.epochs_run == 1
    assert load_checkpoint(run / "last.pt")["epoch"] == 3
    with (run / "history.csv").open() as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3"]


def test_resume_from_a_checkpoint_without_a_schedule_is_refused(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(trained_run, run)
    state = load_checkpoint(run / "last.pt")
    del state["schedule"]  # a checkpoint that holds no run schedule
    save_checkpoint(run / "last.pt", state)
    config = json.loads((run / "config.json").read_text())
    config.update(out=str(run), epochs=3, resume=True)
    with pytest.raises(CheckpointError, match="older edge-train.*start a new run"):
        fit(TrainConfig(**config))


def test_a_time_budget_ends_the_run_on_the_clock(
    synth_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = TrainConfig(
        data=synth_data,
        out=tmp_path / "budget",
        weights="none",
        image_size=64,
        batch_size=8,
        epochs=4,
        time_budget_min=0.001,  # less than one step takes
        cam_images=0,
    )
    with caplog.at_level("INFO", logger="trainer.fit"):
        result = fit(config)
    assert result.epochs_run == 1
    assert "time budget 0.001 min: training ends when it is spent, or after 4 epochs" in caplog.text
    state = load_checkpoint(tmp_path / "budget" / "last.pt")
    # the first step starts the clock, and the budget is spent before the second: one batch of 8, mid-epoch
    assert state["schedule"]["steps"] == 1 and state["schedule"]["elapsed_s"] >= 0.06
    assert state["history"][0]["train_images"] == 8
    assert (tmp_path / "budget" / "best.pt").is_file() and (tmp_path / "budget" / "report.html").is_file()


def test_resume_without_checkpoint_is_refused(synth_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=synth_data, out=tmp_path / "fresh", weights="none", image_size=64, resume=True)
    with pytest.raises(CheckpointError, match="last.pt: checkpoint not found"):
        fit(config)


def test_evaluate_on_another_folder(trained_run: Path, synth_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(trained_run), "--data", str(synth_data), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["count"] == 42 and metrics["evaluated_on"] == str(synth_data)
    assert (out / "report.html").is_file()
    assert "accuracy" in capsys.readouterr().out


def test_one_class_folder_refused_with_one_line(tmp_path: Path, synth_data: Path, capsys) -> None:
    data = tmp_path / "one"
    shutil.copytree(synth_data / "ok", data / "ok")
    code = main(["fit", "--data", str(data), "--out", str(tmp_path / "run"), "--weights", "none"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("edge-train: error:") and "at least two" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_bad_config_file_named_in_error(tmp_path: Path, capsys) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("epochs: -3\nbatch_sise: 8\n")
    code = main(["fit", "--config", str(config), "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and str(config) in err and "epochs" in err and "batch_sise" in err


@pytest.mark.usefixtures("offline")
def test_imagenet_weights_missing_is_one_line(tmp_path: Path, synth_data: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    code = main(["fit", "--data", str(synth_data), "--out", str(tmp_path / "run"), "--image-size", "64"])
    err = capsys.readouterr().err
    assert code == 2 and "torch hub cache" in err and "--weights none" in err
