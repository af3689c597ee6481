"""The installer, deploy/install/install.sh: shellcheck, and dry runs that change nothing."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install" / "install.sh"


# Commands that change the system. During --dry-run they are shadowed on PATH by
# a stub that records the call and fails, so a dry run that ran one shows up.
_MUTATING = [
    "useradd", "groupadd", "usermod", "install", "cp", "mv", "rm", "chmod", "chown", "ln", "mkdir",
    "sed", "runuser", "python3", "pip", "systemctl",
]  # fmt: skip
_SYSTEM_PATHS = [
    Path("/opt/edge-inspector"),
    Path("/etc/edge-inspector"),
    Path("/var/lib/edge-inspector"),
    Path("/etc/systemd/system/edge-inspector.service"),
]


def test_install_script_syntax() -> None:
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    assert INSTALL.stat().st_mode & stat.S_IXUSR


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_install_script_shellcheck() -> None:
    result = subprocess.run(["shellcheck", str(INSTALL)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def _dry_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    log = tmp_path / "stub-calls.log"
    for name in _MUTATING:
        stub = stubs / name
        # `systemctl is-active` is the one read-only query the script makes.
        stub.write_text(
            f'#!/bin/sh\necho "{name} $*" >> "{log}"\n[ "{name} $1" = "systemctl is-active" ] && exit 3\nexit 97\n'
        )
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_INSPECTOR")}
    env["PATH"] = f"{stubs}:{env.get('PATH', '/usr/bin:/bin')}"
    result = subprocess.run(
        ["bash", str(INSTALL), "--dry-run", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    bundle = tmp_path / "pcb-resnet50-cbam"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    return bundle


def test_install_dry_run_prints_and_changes_nothing(tmp_path: Path, bundle_dir: Path, example_copy: Path) -> None:
    before = {p: p.exists() for p in _SYSTEM_PATHS}
    result, calls = _dry_run(
        tmp_path, "--bundle", str(bundle_dir), "--config", str(example_copy), "--extras", "openvino"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    try:
        import pwd

        pwd.getpwnam("edge-inspector")
        assert "user edge-inspector exists" in out
    except KeyError:
        assert re.search(
            r"^\+ useradd --system .*--home-dir /var/lib/edge-inspector .*nologin.* edge-inspector$", out, re.M
        )
    assert "+ python3 -m venv /opt/edge-inspector/venv" in out
    assert re.search(r"^\+ /opt/edge-inspector/venv/bin/python -m pip install --upgrade .*\\\[openvino\\\]$", out, re.M)
    assert "check-bundle /opt/edge-inspector/bundles/pcb-resnet50-cbam.new" in out
    assert "check-config /etc/edge-inspector/config.yaml" in out
    assert "/etc/systemd/system/edge-inspector.service" in out
    assert "+ systemctl daemon-reload" in out
    assert "+ systemctl enable --now edge-inspector.service" in out
    # Nothing but the read-only query ran, and nothing appeared on the system.
    assert [c for c in calls if not c.startswith("systemctl is-active")] == []
    assert {p: p.exists() for p in _SYSTEM_PATHS} == before


def test_install_dry_run_options(tmp_path: Path, example_copy: Path) -> None:
    result, calls = _dry_run(tmp_path, "--prefix", "/srv/edge", "--no-start", "--config", str(example_copy))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "+ python3 -m venv /srv/edge/venv" in out
    assert "+ sed -i s#/opt/edge-inspector#/srv/edge#g /etc/systemd/system/edge-inspector.service" in out
    assert "+ systemctl daemon-reload" in out
    assert "+ systemctl enable" not in out and "+ systemctl restart" not in out
    assert "not started (--no-start)" in out
    assert calls == []


def test_install_dry_run_without_config_installs_the_example_and_does_not_start(tmp_path: Path) -> None:
    if Path("/etc/edge-inspector/config.yaml").exists():
        pytest.skip("this machine has an installed config")
    result, calls = _dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"^\+ install .*/systemd/config\.example\.yaml /etc/edge-inspector/config\.yaml$", result.stdout, re.M
    )
    assert "check-config" not in result.stdout.split("note:")[0]
    assert "+ systemctl enable" not in result.stdout
    assert [c for c in calls if not c.startswith("systemctl is-active")] == []


@pytest.mark.parametrize("args", [["--extras", "cuda"], ["--bogus"], ["--bundle", "/nonexistent/bundle"]])
def test_install_refuses_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    result, calls = _dry_run(tmp_path, *args)
    assert result.returncode != 0
    assert "error" in result.stderr
    assert calls == []


def _pip_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if " -m pip install" in line]


def test_install_dry_run_on_jetpack_keeps_the_system_opencv_and_tensorrt(tmp_path: Path) -> None:
    result, calls = _dry_run(tmp_path, "--jetpack", "--extras", "tensorrt", "--no-start")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    venv = "/opt/edge-inspector/venv"
    assert f"+ python3 -m venv --system-site-packages {venv}" in out
    assert f"+ {venv}/bin/python -m pip install --upgrade --no-deps {REPO}" in out
    assert (
        f"+ {venv}/bin/python -m deploy.install.jetpack requirements --extras tensorrt "
        f"--out {venv}/jetpack-requirements.txt"
    ) in out
    assert f"+ {venv}/bin/python -m pip install --upgrade -r {venv}/jetpack-requirements.txt" in out
    assert f"+ {venv}/bin/python -m deploy.install.jetpack check --tensorrt" in out
    # nothing installs the package with its dependencies, pip's OpenCV or pip's TensorRT
    assert not any("[tensorrt]" in line or "opencv" in line or "tensorrt>" in line for line in _pip_lines(out))
    assert calls == []


def test_install_dry_run_on_x86_uses_the_pip_tensorrt_wheels(tmp_path: Path) -> None:
    result, calls = _dry_run(tmp_path, "--no-jetpack", "--extras", "tensorrt", "--no-start")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "+ python3 -m venv /opt/edge-inspector/venv" in out and "--system-site-packages" not in out
    assert re.search(r"^\+ /opt/edge-inspector/venv/bin/python -m pip install --upgrade .*\\\[tensorrt\\\]$", out, re.M)
    assert "--no-deps" not in out and "deploy.install.jetpack" not in out
    assert calls == []


def test_install_detects_jetpack_only_on_a_jetson(tmp_path: Path) -> None:
    result, _ = _dry_run(tmp_path, "--no-start")
    assert result.returncode == 0, result.stderr
    on_jetson = Path("/etc/nv_tegra_release").exists()
    assert ("deploy.install.jetpack check" in result.stdout) is on_jetson
