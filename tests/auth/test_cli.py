"""``fhir-server clients``, ``users`` and ``keys`` subcommands, run as processes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pyotp
import pytest
from joserfc import jws
from joserfc.jwk import RSAKey

from fhir_server.cli import _warn_without_clients
from fhir_server.config import Settings
from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from smart_auth import keys
from tests.auth.flows import backend_token, urls
from tests.conftest import LiveServer, unique


def cli(database_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "--database-url", database_url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def field(output: str, name: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith(name + ": "))


def test_clients_add_list_remove_and_a_quick_start_token(smart_server: LiveServer) -> None:
    database = smart_server.settings.database_url
    added = cli(
        database,
        "clients",
        "add",
        "--name",
        "Quick start",
        "--type",
        "confidential-symmetric",
        "--scope",
        "system/*.rs",
    )
    assert added.returncode == 0, added.stderr
    client_id, secret = field(added.stdout, "client_id"), field(added.stdout, "client_secret")
    token = httpx.post(
        urls(smart_server).token,
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        auth=(client_id, secret),
    )
    assert token.status_code == 200 and token.json()["scope"] == "system/*.rs"

    listed = cli(database, "clients", "list")
    assert f"{client_id}\tconfidential-symmetric\tQuick start\tsystem/*.rs" in listed.stdout
    assert secret not in listed.stdout
    assert cli(database, "clients", "remove", client_id).returncode == 0
    assert client_id not in cli(database, "clients", "list").stdout
    gone = cli(database, "clients", "remove", client_id)
    assert gone.returncode == 1 and "no client" in gone.stderr


def test_clients_add_asymmetric_and_public(smart_server: LiveServer, tmp_path: Path) -> None:
    database = smart_server.settings.database_url
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    chosen = unique("backend-")
    added = cli(
        database,
        "clients",
        "add",
        "--name",
        "Backend",
        "--type",
        "confidential-asymmetric",
        "--jwks-file",
        str(jwks),
        "--scope",
        "system/*.rs",
        "--client-id",
        chosen,
    )
    assert added.returncode == 0, added.stderr
    assert field(added.stdout, "client_id") == chosen and "client_secret" not in added.stdout
    public = cli(
        database, "clients", "add", "--name", "App", "--type", "public", "--redirect-uri", "https://app.example/cb"
    )
    assert public.returncode == 0 and "client_secret" not in public.stdout
    refused = cli(database, "clients", "add", "--name", "Bad", "--type", "confidential-asymmetric")
    assert refused.returncode == 1 and "JWKS" in refused.stderr
    unknown = cli(database, "clients", "add", "--name", "Bad", "--type", "public", "--scope", "patient/Nothing.xyz")
    assert unknown.returncode == 1 and "unknown scopes" in unknown.stderr


def test_users_add_with_totp_list_remove(smart_server: LiveServer) -> None:
    database = smart_server.settings.database_url
    login = unique("cli-user")
    added = cli(
        database,
        "users",
        "add",
        login,
        "--password-stdin",
        "--fhir-user",
        "Practitioner/7",
        "--totp",
        stdin="a long password\n",
    )
    assert added.returncode == 0, added.stderr
    uri = added.stdout.split("shown only now): ", 1)[1].strip()
    assert uri.startswith("otpauth://totp/") and pyotp.parse_uri(uri).now().isdigit()
    assert f"{login}\tPractitioner/7\ttotp" in cli(database, "users", "list").stdout
    short = cli(database, "users", "add", unique("u"), "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "8 characters" in short.stderr
    assert cli(database, "users", "remove", login).returncode == 0
    assert login not in cli(database, "users", "list").stdout


def test_keys_rotate_keeps_old_tokens_valid(smart_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    before = backend_token(smart_server)
    monkeypatch.setattr(keys, "RELOAD_AFTER", 0.0)  # the server sees the other process's rotation at once
    rotated = cli(smart_server.settings.database_url, "keys", "rotate")
    assert rotated.returncode == 0 and "signing with new key" in rotated.stdout
    kid = rotated.stdout.split("new key ", 1)[1].split(";")[0]
    jwks = httpx.get(urls(smart_server).jwks).json()
    assert kid in {key["kid"] for key in jwks["keys"]}
    assert smart_server.app.ctx.auth.verifier.verify(before).scope == "system/*.rs"
    after = backend_token(smart_server)
    assert jws.extract_compact(after.encode()).headers()["kid"] == kid


def test_first_start_without_clients_says_how_to_create_one(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    upgrade(engine)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        _warn_without_clients(Settings(database_url=fresh_database_url), engine)
    finally:
        logging.getLogger().removeHandler(handler)
        engine.dispose()
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert "fhir-server clients add --name quickstart --type confidential-symmetric" in records[0].getMessage()
