"""``fhir-server mllp`` as its own process: clients we did not write (python-hl7's ``mllp_send``, Medplum's
npm ``@medplum/hl7``), the store commands, and durability across ``kill -9``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fhir_server.storage.engine import make_engine
from fhir_server.storage.schema import resource
from hl7_gateway.mllp import Deframer, frame
from hl7_gateway.schema import hl7_message
from tests.conftest import free_port, unavailable
from tests.hl7_gateway.conftest import lab_message, msa, send
from tests.shared_data import shared

JS_DIR = Path(__file__).parent / "js"
MEDPLUM_HL7 = "5.0.10"


def start(database_url: str, port: int, *options: str) -> subprocess.Popen[bytes]:
    """``fhir-server mllp`` on ``port``, once it accepts connections."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "mllp", "--port", str(port), *options],
        env={**os.environ, "FHIR_DATABASE_URL": database_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"listener did not start: {process.stderr.read().decode() if process.stderr else ''}"
                ) from exc
            time.sleep(0.1)


@pytest.fixture
def listener(fresh_database_url: str) -> Iterator[int]:
    port = free_port()
    process = start(fresh_database_url, port)
    yield port
    process.terminate()
    process.wait(timeout=30)


def test_mllp_send_gets_accept_acknowledgements(listener: int) -> None:
    mllp_send = shutil.which("mllp_send") or str(Path(sys.executable).parent / "mllp_send")
    sample = shared("hl7v2", "35_ORU_R01_lab.hl7")
    result = subprocess.run(
        [mllp_send, "--loose", "--file", str(sample), "--port", str(listener), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "MSA|AA|182" in result.stdout.replace("\n", "\r")


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` executable, once Node.js and the pinned @medplum/hl7 are there (``make test`` installs it)."""
    found = shutil.which("node")
    if found is None:
        unavailable("Node.js is not installed (apt-get install -y nodejs npm)")
    manifest = JS_DIR / "node_modules" / "@medplum" / "hl7" / "package.json"
    installed = json.loads(manifest.read_text())["version"] if manifest.exists() else None
    if installed != MEDPLUM_HL7:
        unavailable(f"npm package @medplum/hl7@{MEDPLUM_HL7} is not installed (found {installed}): npm ci in {JS_DIR}")
    return str(found)


def test_medplum_hl7_client_gets_accept_acknowledgements(node: str, listener: int, tmp_path: Path) -> None:
    files = [shared("hl7v2", "35_ORU_R01_lab.hl7"), shared("hl7v2", "16_ADT_A01_23_cerner.hl7")]
    files[1] = tmp_path / "adt.hl7"  # original mode: MSH-15 emptied, so one ACK answers it
    text = shared("hl7v2", "16_ADT_A01_23_cerner.hl7").read_text(encoding="latin-1")
    adt = text.replace("\r\n", "\r").replace("\n", "\r").split("\r", 1)
    header = adt[0].split("|")
    header[14] = ""
    files[1].write_text("|".join(header) + "\r" + adt[1], encoding="latin-1")
    result = subprocess.run(
        [node, "send_hl7.mjs", str(listener), *map(str, files)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["code"], a["control"]) for a in answers] == [("AA", "182"), ("AA", header[9])]


def test_messages_and_reprocess_commands(listener: int, fresh_database_url: str) -> None:
    acks = send(listener, lab_message("CLI-1", "P-CLI-1"), b"MSH|^~\\&|A|B|C|D|x||ZZZ^Z01|CLI-2|P|2.5\rPID|1")
    assert [msa(a)[1] for a in acks] == ["AA", "AR"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "fhir_server.cli", "--database-url", fresh_database_url, "mllp", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    listed = cli("messages").stdout.strip().split("\n")
    assert [line.split("\t")[2:7] for line in listed] == [
        ["processed", "AA", "SomeSystem/", "CLI-1", "ORU^R01"],
        ["rejected", "AR", "A/B", "CLI-2", "ZZZ^Z01"],
    ]
    assert cli("messages", "--status", "rejected", "--limit", "1").stdout.count("\n") == 1
    again = cli("reprocess", "--status", "rejected")
    assert again.returncode == 1 and "reprocessed 1 messages; 0 accepted" in again.stdout
    assert cli("reprocess", "999999").returncode == 1


def test_kill_9_loses_no_acknowledged_message(fresh_database_url: str) -> None:
    """kill -9 while 4 clients send: every AA'd message is stored with its data; resending the
    unacknowledged ones (and the acknowledged ones) after a restart creates no duplicates."""
    port = free_port()
    process = start(fresh_database_url, port)
    messages = {f"KILL-{n}": lab_message(f"KILL-{n}", f"P-KILL-{n}") for n in range(400)}
    acknowledged: dict[str, str] = {}
    names = list(messages)

    def client(share: list[str]) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                deframer = Deframer()
                for name in share:
                    sock.sendall(frame(messages[name]))
                    acks: list[bytes] = []
                    while not acks:
                        data = sock.recv(65536)
                        if not data:
                            return
                        acks = [a for a in deframer.feed(data) if isinstance(a, bytes)]
                    if msa(acks[0].decode())[1] == "AA":
                        acknowledged[name] = acks[0].decode()
        except OSError:
            return

    threads = [threading.Thread(target=client, args=(names[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    for thread in threads:
        thread.join(60)
    assert 40 <= len(acknowledged) < len(messages)

    engine = make_engine(fresh_database_url)

    def stored() -> dict[str, str]:
        with engine.connect() as conn:
            return {
                r.control_id: r.status for r in conn.execute(select(hl7_message.c.control_id, hl7_message.c.status))
            }

    def patients() -> int:
        with engine.connect() as conn:
            query = select(func.count()).select_from(resource).where(resource.c.resource_type == "Patient")
            return int(conn.execute(query).scalar_one())

    after_kill = stored()
    assert all(after_kill.get(name) == "processed" for name in acknowledged)
    assert patients() == sum(status == "processed" for status in after_kill.values())

    process = start(fresh_database_url, port)
    try:
        unacknowledged = [messages[name] for name in names if name not in acknowledged]
        resent = send(port, *unacknowledged)
        assert all(msa(a)[1] == "AA" for a in resent)
        again = send(port, *(messages[name] for name in acknowledged))
        assert again == list(acknowledged.values())  # the stored ACKs, byte for byte
    finally:
        process.terminate()
        process.wait(timeout=30)
    final = stored()
    assert len(final) == len(messages) and set(final.values()) == {"processed"}
    assert patients() == len(messages)
    engine.dispose()


def _children(pid: int) -> set[int]:
    """The live listener processes started by ``pid`` (from /proc; multiprocessing's resource tracker left out)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z" and b"resource_tracker" not in command:
            found.add(int(entry.name))
    return found


def test_listener_workers_share_the_port_and_stop_together(fresh_database_url: str) -> None:
    port = free_port()
    process = start(fresh_database_url, port, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == 2
        answers: list[str] = []

        def connection(n: int) -> None:
            answers.extend(send(port, *(lab_message(f"W{n}-{m}", patient=f"W{n}-P{m}") for m in range(3))))

        threads = [threading.Thread(target=connection, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert sorted(msa(a)[1:3] for a in answers) == sorted(["AA", f"W{n}-{m}"] for n in range(6) for m in range(3))
    finally:
        process.terminate()
        process.wait(timeout=60)
    for pid in workers:  # the workers stop with the parent: nothing keeps the port
        assert not Path(f"/proc/{pid}").exists() or (Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
