"""Transport: TLS, idle timeout, and the listener every ``serve`` worker starts (SO_REUSEPORT)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hl7_gateway.mllp import Deframer, TooLarge, frame
from tests.conftest import free_port, live_server
from tests.hl7_gateway.conftest import Listener, lab_message, listener_on, msa, send


def self_signed(folder: Path) -> tuple[str, str]:
    """A self-signed certificate for localhost/127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "mllp.crt", folder / "mllp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_tls(fresh_database_url: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with listener_on(fresh_database_url, tls_cert=cert, tls_key=key) as listener:
        client = ssl.create_default_context(cafile=cert)
        (ack,) = send(listener.port, lab_message("TLS-1", "P-TLS-1"), tls=client)
        assert msa(ack)[1:3] == ["AA", "TLS-1"]
        assert listener.rows()[0].status == "processed"
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as plain:
            plain.sendall(b"\x0bMSH|^~\\&|A|B|C|D|x||ADT^A01|1|P|2.5\x1c\r")  # no TLS handshake: closed unanswered
            with contextlib.suppress(ConnectionResetError):
                assert plain.recv(100) == b""
        assert len(listener.rows()) == 1


def test_idle_connection_is_closed(fresh_database_url: str) -> None:
    with listener_on(fresh_database_url, idle_timeout=0.5) as listener:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
            started = time.monotonic()
            assert sock.recv(100) == b""
            assert 0.4 < time.monotonic() - started < 5
        with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as sock:  # a busy one stays open
            deframer = Deframer()
            for n in range(3):
                time.sleep(0.3)
                sock.sendall(frame(lab_message(f"IDLE-{n}", f"P-IDLE-{n}")))
                acks: list[bytes | TooLarge] = []
                while not acks:
                    data = sock.recv(65536)
                    assert data, "closed while in use"
                    acks = deframer.feed(data)
                assert msa(acks[0].decode())[1] == "AA"  # type: ignore[union-attr]


def test_junk_nul_and_oversize(listener: Listener) -> None:
    raw = lab_message("JUNK-1", "P-JUNK-1")
    big = b"MSH|^~\\&|A|B|C|D|x||ADT^A01|BIG-1|P|2.5\r" + b"Z" * 300_000  # over the fixture's 200,000 bytes
    with socket.create_connection(("127.0.0.1", listener.port), timeout=60) as sock:
        sock.sendall(
            b"\x00\x00\r\n garbage \x00" + b"\x0b" + raw + b"\x1c\r" + b"\x00\x00\n" + b"\x0b" + big + b"\x1c\r"
        )
        data = b""
        while data.count(b"\x1c\r") < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    first, second = (part.lstrip(b"\x0b").decode() for part in data.split(b"\x1c\r")[:2])
    assert msa(first)[1:3] == ["AA", "JUNK-1"]
    assert msa(second)[1:3] == ["AR", "BIG-1"] and "larger than the 200000 bytes" in second
    assert [r.control_id for r in listener.rows()] == ["JUNK-1"]  # an oversize frame is not kept


def test_serve_workers_share_the_mllp_port(fresh_database_url: str) -> None:
    """Two app instances (as two uvicorn workers) listen on one MLLP port with SO_REUSEPORT; both answer."""
    port = free_port()
    with live_server(fresh_database_url, mllp_port=port), live_server(fresh_database_url, mllp_port=port):
        acks: list[str] = []

        def client(n: int) -> None:
            acks.extend(send(port, lab_message(f"SERVE-{n}-a", f"P-SERVE-{n}"), lab_message(f"SERVE-{n}-b")))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(acks) == 16 and all(msa(a)[1] == "AA" for a in acks)


def test_test_servers_start_no_listener(fresh_database_url: str) -> None:
    with live_server(fresh_database_url) as server:
        assert server.settings.mllp_port == 0
