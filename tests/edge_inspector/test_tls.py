"""TLS to the broker: a CA file, optionally a client certificate (certificates made by openssl here)."""

import shutil
import subprocess
from pathlib import Path

import pytest
from mqtt_broker import MosquittoBroker, Subscriber, free_port
from polling import wait_until
from spooled import spool_verdicts

from edge_inspector.config import MqttConfig, TlsConfig
from edge_inspector.outbox import Publisher, Spool


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _self_signed_ca(name: str, common_name: str, folder: Path) -> None:
    """``name.key`` and a self-signed ``name.crt`` in ``folder``."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-subj",
        f"/CN={common_name}",
        cwd=folder,
    )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("pki")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _self_signed_ca("ca", "edge-inspector test CA", folder)
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=folder,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            cwd=folder,
        )
    return folder


@pytest.mark.parametrize("client_certificate", [False, True])
def test_verdicts_over_tls(certificates: Path, tmp_path: Path, client_certificate: bool) -> None:
    tls_port = free_port()
    listener = [
        f"listener {tls_port} 127.0.0.1",
        f"cafile {certificates / 'ca.crt'}",
        f"certfile {certificates / 'server.crt'}",
        f"keyfile {certificates / 'server.key'}",
        f"require_certificate {'true' if client_certificate else 'false'}",
    ]
    with (
        MosquittoBroker(extra_config=listener) as broker,
        Subscriber(broker.host, broker.port, "tls/s1/verdict") as sub,
    ):
        tls = TlsConfig(
            ca_file=certificates / "ca.crt",
            cert_file=certificates / "client.crt" if client_certificate else None,
            key_file=certificates / "client.key" if client_certificate else None,
        )
        config = MqttConfig(host="127.0.0.1", port=tls_port, prefix="tls", tls=tls)
        with Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20) as spool:
            publisher = Publisher(config, station="s1", spool=spool, status_offline=b'{"state": "offline"}')
            publisher.start()
            try:
                spool_verdicts(publisher, 1)
                received = sub.wait_for(1, timeout=15)
                assert publisher.flush(10)
            finally:
                publisher.stop(timeout=5)
    assert received[0].payload == b'{"seq": 1}'


def test_broker_certificate_from_another_ca_is_refused(certificates: Path, tmp_path: Path) -> None:
    _self_signed_ca("other", "someone else", tmp_path)
    tls_port = free_port()
    listener = [
        f"listener {tls_port} 127.0.0.1",
        f"certfile {certificates / 'server.crt'}",
        f"keyfile {certificates / 'server.key'}",
    ]
    with MosquittoBroker(extra_config=listener), Spool(tmp_path / "spool.sqlite", max_bytes=1 << 20) as spool:
        config = MqttConfig(
            host="127.0.0.1", port=tls_port, prefix="tls", tls=TlsConfig(ca_file=tmp_path / "other.crt")
        )
        publisher = Publisher(config, station="s1", spool=spool, status_offline=b"{}")
        publisher.start()
        try:
            spool_verdicts(publisher, 1)
            assert wait_until(lambda: publisher.last_error is not None, timeout=15)
            assert "certificate does not verify against mqtt.tls.ca_file" in str(publisher.last_error)
            assert str(tmp_path / "other.crt") in str(publisher.last_error)
            assert not publisher.connected and spool.depth()["verdicts"] == 1  # never sent to an unverified broker
        finally:
            publisher.stop(timeout=3)
