"""The ASGI application: one catch-all route under ``/fhir`` feeding the FHIR router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.http import handle
from fhir_server.api.request import Context
from fhir_server.config import Settings
from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository

BASE_PATH = "/fhir"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (from the environment when omitted), migrating the schema if asked."""
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)
    if settings.auto_migrate:
        upgrade(engine)
    ctx = Context(Repository(engine, settings.partition, settings.base_url), settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="FHIR R4 server", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.context = ctx

    @app.api_route(BASE_PATH, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.api_route(BASE_PATH + "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def fhir(request: Request, path: str = "") -> Response:
        return await handle(request, ctx, path)

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process builds its own app)."""
    return create_app()
