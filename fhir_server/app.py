"""The ASGI application: FHIR requests under ``/fhir`` go straight to the FHIR router; anything else
(the SMART authorization routes under ``/auth`` and ``/fhir/.well-known``) to a FastAPI app, which also runs the lifespan.

The FHIR path skips FastAPI's middleware stack on purpose: every FHIR response is built and its errors
handled in ``fhir_server.api.http``, and the stack cost more than the interaction itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from fhir_server.api.http import handle
from fhir_server.api.request import Context
from fhir_server.bulk.worker import ExportWorkers
from fhir_server.config import Settings
from fhir_server.storage.engine import is_sqlite, make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository
from fhir_server.terminology import seed
from hl7_gateway.server import MllpService
from smart_auth.service import WELL_KNOWN_PATH, SmartAuth

BASE_PATH = "/fhir"


class FhirApp:
    """ASGI entry point: dispatches ``/fhir`` and ``/fhir/...`` itself, the rest to ``fallback``."""

    def __init__(self, ctx: Context, fallback: FastAPI) -> None:
        self.ctx = ctx
        self.fallback = fallback
        self.state: Any = fallback.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and (path == BASE_PATH or path.startswith(BASE_PATH + "/"))
            and not _well_known(path)
        ):
            response = await handle(Request(scope, receive), self.ctx, path[len(BASE_PATH) + 1 :])
            await response(scope, receive, send)
            return
        await self.fallback(scope, receive, send)


def _well_known(path: str) -> bool:
    """``/fhir/.well-known/...`` (SMART and OpenID discovery) is served by the authorization routes."""
    return path.startswith(WELL_KNOWN_PATH + "/")


def create_app(settings: Settings | None = None) -> FhirApp:
    """Build the app for ``settings`` (from the environment when omitted), migrating the schema if asked."""
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)
    if settings.auto_migrate:
        upgrade(engine)
    repository = Repository(engine, settings.partition, settings.base_url, settings.search_timeout_ms)
    auth = SmartAuth(engine, settings) if settings.auth else None
    workers = ExportWorkers(engine, settings)
    ctx = Context(repository, settings, inline_lookups=is_sqlite(engine), auth=auth)
    # HL7 v2: every worker listens on FHIR_MLLP_PORT (SO_REUSEPORT); 0 starts no listener.
    mllp = MllpService(ctx, settings) if settings.mllp_port else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Few threads: interactions are short and CPU-bound in Python; more threads only fight for the GIL.
        to_thread.current_default_thread_limiter().total_tokens = settings.threads
        if auth is not None:
            auth.start()
        workers.start()
        # RxNorm's seed and CodeSystem resource, so that clients discover them before any terminology call.
        await to_thread.run_sync(seed.ensure, ctx)
        if mllp is not None:
            await mllp.start()
        yield
        if mllp is not None:
            await mllp.stop()
        workers.stop()
        if auth is not None:
            auth.revocations.close()
        engine.dispose()

    fallback = FastAPI(title="FHIR R4 server", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    fallback.state.context = ctx
    if auth is not None:
        fallback.include_router(auth.router)
    return FhirApp(ctx, fallback)


def app_from_env() -> FhirApp:
    """Factory for ``uvicorn --factory`` (each worker process builds its own app)."""
    return create_app()
