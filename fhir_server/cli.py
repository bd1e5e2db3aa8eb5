"""``fhir-server``: one command line with subcommands (serve, migrate, import, reindex, mllp, rxnorm load).

Settings come from ``FHIR_*`` environment variables; flags override them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_server.config import Settings

if TYPE_CHECKING:
    from fhir_server.storage.repository import WriteUnit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 interoperability server")
    parser.add_argument("--database-url", help="SQLAlchemy URL (env FHIR_DATABASE_URL)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="interface to bind (env FHIR_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env FHIR_PORT, default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (env FHIR_WORKERS, default 1)")
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

    mllp = commands.add_parser("mllp", help="run the HL7 v2 MLLP listener on its own")
    mllp.add_argument("--host", help="interface to bind (env FHIR_HOST, default 127.0.0.1)")
    mllp.add_argument("--port", type=int, help="port (env FHIR_MLLP_PORT, default 2575)")
    mllp.set_defaults(run=_mllp)

    rxnorm = commands.add_parser("rxnorm", help="RxNorm terminology").add_subparsers(dest="action", required=True)
    rxnorm_load = rxnorm.add_parser("load", help="load an RxNorm release (RRF files), replacing the loaded one")
    rxnorm_load.add_argument("folder", type=Path, help="the release's rrf/ folder (RXNCONSO.RRF, RXNREL.RRF ...)")
    rxnorm_load.add_argument("--version", help="release version (default: the folder's name)")
    rxnorm_load.add_argument(
        "--umls-licence", action="store_true", help="also load non-RXNORM sources (needs a UMLS licence)"
    )
    rxnorm_load.add_argument("--quiet", action="store_true", help="no progress bar")
    rxnorm_load.set_defaults(run=_rxnorm_load)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env().with_overrides(database_url=args.database_url)
    return int(args.run(settings, args) or 0)


def _mllp(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from fhir_server.api.request import Context
    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.repository import Repository
    from hl7_gateway.server import ListenerSettings, start_listener

    settings = settings.with_overrides(host=args.host, mllp_port=args.port)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    ctx = Context(Repository(engine, settings.partition, settings.base_url), settings)

    async def run() -> None:
        listener = await start_listener(ctx, ListenerSettings(host=settings.host, port=settings.mllp_port))
        logging.info("MLLP listener on %s:%s", settings.host, settings.mllp_port)
        async with listener:
            await listener.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from fhir_server.storage.engine import make_engine
    from fhir_server.storage.migrate import upgrade

    settings = settings.with_overrides(host=args.host, port=args.port, workers=args.workers)
    if "FHIR_BASE_URL" not in os.environ:
        public_host = "127.0.0.1" if settings.host in {"0.0.0.0", "::", ""} else settings.host
        if public_host != settings.host:
            logging.warning("listening on all interfaces: set FHIR_BASE_URL to the address clients use")
        settings = settings.with_overrides(base_url=f"http://{public_host}:{settings.port}/fhir")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    os.environ.update(
        FHIR_DATABASE_URL=settings.database_url,
        FHIR_BASE_URL=settings.base_url,
        FHIR_AUTO_MIGRATE="false",
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
