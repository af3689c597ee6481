"""Fixtures of the agent's tests: the example config, ready to load."""

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "config.example.yaml"


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """The example, its password file pointed at one that exists."""
    password = tmp_path / "mqtt-password"
    password.write_text("s3cret\n")
    text = EXAMPLE.read_text()
    assert "password_file: /etc/edge-inspector/mqtt-password" in text
    copy = tmp_path / "config.yaml"
    copy.write_text(text.replace("/etc/edge-inspector/mqtt-password", str(password)))
    return copy
