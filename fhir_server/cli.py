"""``fhir-server``: one command line with subcommands (serve, migrate, import, reindex, mllp, rxnorm load,
clients, users, keys).

Settings come from ``FHIR_*`` environment variables; flags override them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhir_server.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from fhir_server.storage.repository import WriteUnit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 interoperability server")
    parser.add_argument("--database-url", help="SQLAlchemy URL (env FHIR_DATABASE_URL)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="interface to bind (env FHIR_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env FHIR_PORT, default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (env FHIR_WORKERS, default 1)")
    serve.add_argument("--no-auth", action="store_true", help="serve without SMART authorization (FHIR_AUTH=off)")
    serve.add_argument("--mllp-port", type=int, help="HL7 v2 MLLP port (env FHIR_MLLP_PORT, default 2575; 0: none)")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations (Alembic)")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(run=_migrate)

    load = commands.add_parser("import", help="import Bundles and NDJSON files or folders")
    load.add_argument("paths", nargs="+", type=Path)
    load.add_argument("--quiet", action="store_true", help="no progress bar")
    load.set_defaults(run=_import)

    reindex = commands.add_parser("reindex", help="rebuild every resource's search index rows")
    reindex.add_argument("--batch", type=int, default=500, help="resources per transaction (default 500)")
    reindex.set_defaults(run=_reindex)

    _add_mllp_commands(commands)

    rxnorm = commands.add_parser("rxnorm", help="RxNorm terminology").add_subparsers(dest="action", required=True)
    rxnorm_load = rxnorm.add_parser("load", help="load an RxNorm release (RRF files), replacing the loaded one")
    rxnorm_load.add_argument("folder", type=Path, help="the release's rrf/ folder (RXNCONSO.RRF, RXNREL.RRF ...)")
    rxnorm_load.add_argument("--version", help="release version (default: the folder's name)")
    rxnorm_load.add_argument(
        "--umls-licence", action="store_true", help="also load non-RXNORM sources (needs a UMLS licence)"
    )
    rxnorm_load.add_argument("--quiet", action="store_true", help="no progress bar")
    rxnorm_load.set_defaults(run=_rxnorm_load)

    _add_auth_commands(commands)

    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings.from_env().with_overrides(database_url=args.database_url)
    return int(args.run(settings, args) or 0)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _add_mllp_commands(commands: Any) -> None:
    """``mllp``: the HL7 v2 listener on its own, and the raw message store (list, reprocess)."""
    mllp = commands.add_parser("mllp", help="run the HL7 v2 MLLP listener on its own; list or reprocess messages")
    mllp.add_argument("--host", help="interface to bind (env FHIR_HOST, default 127.0.0.1)")
    mllp.add_argument("--port", type=int, help="port (env FHIR_MLLP_PORT, default 2575)")
    mllp.add_argument("--workers", type=int, help="listener processes sharing the port (env FHIR_WORKERS, default 1)")
    mllp.set_defaults(run=_mllp)
    actions = mllp.add_subparsers(dest="action", required=False)
    messages = actions.add_parser("messages", help="list stored messages (newest last)")
    messages.add_argument("--status", choices=["received", "processed", "error", "rejected"])
    messages.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    messages.set_defaults(run=_mllp_messages)
    reprocess = actions.add_parser("reprocess", help="run stored messages again (after a mapping fix)")
    which = reprocess.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the message's id (from `mllp messages`)")
    which.add_argument("--status", choices=["received", "error", "rejected"], help="every message in this status")
    reprocess.set_defaults(run=_mllp_reprocess)


def _add_auth_commands(commands: Any) -> None:
    """``clients``, ``users`` and ``keys``: the SMART authorization server's registrations."""
    clients = commands.add_parser("clients", help="SMART clients (apps, backend services, EHRs)")
    client_actions = clients.add_subparsers(dest="action", required=True)
    add = client_actions.add_parser("add", help="register a client; prints its id (and secret, once)")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--type", required=True, choices=["public", "confidential-symmetric", "confidential-asymmetric"], dest="kind"
    )
    add.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris", help="repeatable")
    add.add_argument("--scope", help="scopes the client may be granted (default: all app scopes, no system/)")
    keys = add.add_mutually_exclusive_group()
    keys.add_argument("--jwks-url", help="where the client publishes its public keys (asymmetric)")
    keys.add_argument("--jwks-file", type=Path, help="a file holding the client's public JWKS (asymmetric)")
    add.add_argument("--client-id", help="choose the client id (default: random)")
    add.add_argument("--ehr-launch", action="store_true", help="may register EHR launches (POST /auth/launch)")
    add.set_defaults(run=_clients_add)
    client_actions.add_parser("list", help="list registered clients").set_defaults(run=_clients_list)
    remove = client_actions.add_parser("remove", help="unregister a client")
    remove.add_argument("client_id")
    remove.set_defaults(run=_clients_remove)

    users = commands.add_parser("users", help="users who sign in on the authorization pages")
    user_actions = users.add_subparsers(dest="action", required=True)
    add_user = user_actions.add_parser("add", help="add a user (password from stdin or a prompt)")
    add_user.add_argument("login")
    add_user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add_user.add_argument("--fhir-user", help="the FHIR resource the user is, e.g. Practitioner/123")
    add_user.add_argument("--totp", action="store_true", help="require a TOTP code; prints the provisioning URI")
    add_user.set_defaults(run=_users_add)
    user_actions.add_parser("list", help="list users").set_defaults(run=_users_list)
    remove_user = user_actions.add_parser("remove", help="remove a user")
    remove_user.add_argument("login")
    remove_user.set_defaults(run=_users_remove)

    keys_command = commands.add_parser("keys", help="token signing keys").add_subparsers(dest="action", required=True)
    keys_command.add_parser("rotate", help="sign with a new key from now on").set_defaults(run=_keys_rotate)


def _auth_engine(settings: Settings) -> Engine:
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine)
    return engine


def _clients_add(settings: Settings, args: argparse.Namespace) -> int:
    from smart_auth.clients import ClientError, add_client

    engine = _auth_engine(settings)
    try:
        jwks = json.loads(args.jwks_file.read_text()) if args.jwks_file else None
        client, secret = add_client(
            engine,
            args.name,
            args.kind,
            redirect_uris=args.redirect_uris,
            scope=args.scope,
            jwks_uri=args.jwks_url,
            jwks=jwks,
            client_id=args.client_id,
            ehr_launch=args.ehr_launch,
        )
    except (ClientError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"client_id: {client.client_id}")
    if secret:
        print(f"client_secret: {secret}")
        print("(the secret is shown only now; it is stored hashed)")
    return 0


def _clients_list(settings: Settings, args: argparse.Namespace) -> int:
    from smart_auth.clients import list_clients

    engine = _auth_engine(settings)
    for client in list_clients(engine):
        extra = " ehr-launch" if client.ehr_launch else ""
        print(f"{client.client_id}\t{client.kind}\t{client.name}\t{' '.join(client.scope)}{extra}")
    engine.dispose()
    return 0


def _clients_remove(settings: Settings, args: argparse.Namespace) -> int:
    from smart_auth.clients import remove_client

    engine = _auth_engine(settings)
    removed = remove_client(engine, args.client_id)
    engine.dispose()
    return _removed("client", args.client_id, removed)


def _users_add(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from smart_auth.users import UserError, add_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 1
    engine = _auth_engine(settings)
    try:
        user, totp_uri = add_user(engine, args.login, password, fhir_user=args.fhir_user, totp=args.totp)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"added user {user.login}" + (f" ({user.fhir_user})" if user.fhir_user else ""))
    if totp_uri:
        print(f"TOTP provisioning URI (add it to an authenticator app; shown only now): {totp_uri}")
    return 0


def _users_list(settings: Settings, args: argparse.Namespace) -> int:
    from smart_auth.users import list_users

    engine = _auth_engine(settings)
    for user in list_users(engine):
        print(f"{user.login}\t{user.fhir_user or '-'}\t{'totp' if user.totp_secret else ''}".rstrip())
    engine.dispose()
    return 0


def _users_remove(settings: Settings, args: argparse.Namespace) -> int:
    from smart_auth.users import remove_user

    engine = _auth_engine(settings)
    removed = remove_user(engine, args.login)
    engine.dispose()
    return _removed("user", args.login, removed)


def _removed(what: str, name: str, removed: bool) -> int:
    """The exit status and message of ``clients remove`` / ``users remove``."""
    if not removed:
        print(f"error: no {what} {name}", file=sys.stderr)
        return 1
    print(f"removed {what} {name}")
    return 0


def _keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from smart_auth.keys import SigningKeys

    engine = _auth_engine(settings)
    kid = SigningKeys(engine).rotate()
    engine.dispose()
    print(f"signing with new key {kid}; the previous keys still verify tokens they signed")
    return 0


def _warn_without_clients(settings: Settings, engine: Engine) -> None:
    """On a server with authorization on and no client yet, say once how to register one."""
    from smart_auth.clients import count_clients

    if count_clients(engine) == 0:
        logging.warning(
            "SMART authorization is on and no client is registered, so no request can be authorized. Create one:\n"
            '  fhir-server clients add --name quickstart --type confidential-symmetric --scope "system/*.rs"\n'
            "then get a token:\n"
            "  curl -u CLIENT_ID:CLIENT_SECRET -d grant_type=client_credentials -d scope=system/*.rs "
            "%s/auth/token\n"
            "(README, section SMART on FHIR; or serve --no-auth for local experiments)",
            settings.base_url.removesuffix("/fhir"),
        )


def _mllp(settings: Settings, args: argparse.Namespace) -> int:
    """The listener on its own: in this process, or in ``--workers`` processes sharing the port (SO_REUSEPORT,
    the kernel spreading connections over them, as ``serve`` workers do); the schema is migrated first, once."""
    import multiprocessing
    import signal

    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade

    settings = settings.with_overrides(host=args.host, mllp_port=args.port, workers=args.workers)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    if settings.workers <= 1:
        _listen(settings, reuse_port=False)
        return 0
    spawn = multiprocessing.get_context("spawn")
    children = [spawn.Process(target=_listen, args=(settings, True), name=f"mllp-{n}") for n in range(settings.workers)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the children on SIGTERM too (finally below)
    try:
        for child in children:
            child.start()
        for child in children:
            child.join()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join(30)
    failed = [child.name for child in children if child.exitcode not in (0, None)]
    if failed:
        logging.error("MLLP listener process(es) %s failed (see above)", ", ".join(failed))
    return 1 if failed else 0


def _listen(settings: Settings, reuse_port: bool) -> None:
    """One listener process: serve MLLP until interrupted or terminated."""
    import asyncio
    import signal

    from fhir_server.api.request import Context
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.repository import Repository
    from hl7_gateway.server import ListenerSettings, start_listener

    configure_logging()  # a spawned process starts without the parent's
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    engine = make_engine(settings.database_url)
    ctx = Context(Repository(engine, settings.partition, settings.base_url), settings)
    listener_settings = ListenerSettings.from_settings(settings, reuse_port=reuse_port)

    async def run() -> None:
        listener = await start_listener(ctx, listener_settings)
        tls = " (TLS)" if listener_settings.tls_cert else ""
        logging.info("MLLP listener on %s:%s%s", settings.host, settings.mllp_port, tls)
        async with listener:
            await listener.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()


def _gateway(settings: Settings) -> tuple[Engine, Any]:
    """An engine (migrated) and the HL7 gateway on it, for the store commands."""
    from fhir_server.api.request import Context
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.repository import Repository
    from hl7_gateway.process import Gateway

    engine = make_engine(settings.database_url)
    upgrade(engine)
    ctx = Context(Repository(engine, settings.partition, settings.base_url), settings)
    return engine, Gateway(ctx, settings.mllp_charset)


def _mllp_messages(settings: Settings, args: argparse.Namespace) -> int:
    """One line per message: id, received, status, ACK code, sender, MSH-10, type, peer, error."""
    engine, gateway = _gateway(settings)
    for m in gateway.store.list(args.status, args.limit, newest=True):
        h = m.header
        sender = f"{h.sending_application}/{h.sending_facility}"
        fields = [str(m.id), m.received_at.isoformat(timespec="seconds"), m.status, m.ack_code or "-", sender]
        fields += [h.control_id or "-", h.message_type or "-", m.peer, (m.error or "").replace("\n", " ")]
        print("\t".join(fields).rstrip())
    engine.dispose()
    return 0


def _mllp_reprocess(settings: Settings, args: argparse.Namespace) -> int:
    """Run one stored message, or every message in a status, again; prints each new outcome."""
    engine, gateway = _gateway(settings)
    ids = [args.id] if args.id is not None else [m.id for m in gateway.store.list(args.status, limit=None)]
    failed = 0
    for message_id in ids:
        outcome = gateway.reprocess(message_id)
        if outcome is None:
            print(f"error: no message {message_id}", file=sys.stderr)
            failed += 1
            continue
        failed += outcome.code != "AA"
        print(f"{message_id}\t{outcome.code}\t{outcome.error or ''}".rstrip())
    engine.dispose()
    print(f"reprocessed {len(ids)} messages; {len(ids) - failed} accepted")
    return 1 if failed else 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade

    settings = settings.with_overrides(host=args.host, port=args.port, workers=args.workers, mllp_port=args.mllp_port)
    if args.no_auth:
        settings = settings.with_overrides(auth=False)
        logging.warning("serving WITHOUT authorization (--no-auth): anyone who can reach the port can read and write")
    if "FHIR_BASE_URL" not in os.environ:
        public_host = "127.0.0.1" if settings.host in {"0.0.0.0", "::", ""} else settings.host
        if public_host != settings.host:
            logging.warning("listening on all interfaces: set FHIR_BASE_URL to the address clients use")
        settings = settings.with_overrides(base_url=f"http://{public_host}:{settings.port}/fhir")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    if settings.auth:
        _warn_without_clients(settings, engine)
    engine.dispose()
    os.environ.update(
        FHIR_DATABASE_URL=settings.database_url,
        FHIR_BASE_URL=settings.base_url,
        FHIR_AUTO_MIGRATE="false",
        FHIR_AUTH="on" if settings.auth else "off",
        FHIR_MLLP_PORT=str(settings.mllp_port),
    )
    uvicorn.run(
        "fhir_server.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
    )
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine, args.revision)
    engine.dispose()
    print(f"database at {engine.url.render_as_string(hide_password=True)} is at revision {args.revision}")
    return 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from fhir_server.api.request import Context
    from fhir_server.importer import import_paths
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.repository import Repository

    engine = make_engine(settings.database_url)
    upgrade(engine)
    ctx = Context(Repository(engine, settings.partition, settings.base_url), settings)
    report = import_paths(ctx, args.paths, progress=not args.quiet)
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    if report.failed > len(report.errors):
        print(f"error: ... and {report.failed - len(report.errors)} more", file=sys.stderr)
    print(f"imported {report.written} resources; {report.failed} errors")
    engine.dispose()
    return 1 if report.failed else 0


def _reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild the index rows, one transaction per batch (after an upgrade that changes what is indexed)."""
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.repository import Repository

    engine = make_engine(settings.database_url)
    upgrade(engine)
    repository = Repository(engine, settings.partition, settings.base_url)
    done, last = 0, 0
    while (following := repository.write(partial(_reindex_batch, after=last, size=args.batch))) is not None:
        done, last = done + 1, following
    engine.dispose()
    print(f"reindexed the resources of partition '{settings.partition}' ({done} batches of up to {args.batch})")
    return 0


def _reindex_batch(unit: WriteUnit, after: int, size: int) -> int | None:
    return unit.reindex(after, size)


def _rxnorm_load(settings: Settings, args: argparse.Namespace) -> int:
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade
    from fhir_server.terminology.rxnorm_load import ReleaseError, load_release

    engine = make_engine(settings.database_url)
    upgrade(engine)
    try:
        report = load_release(
            engine, args.folder, args.version, licensed_sources=args.umls_licence, progress=not args.quiet
        )
    except (ReleaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    rows = ", ".join(f"{table} {count}" for table, count in report.rows.items())
    print(f"loaded RxNorm release {report.version}: {rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
