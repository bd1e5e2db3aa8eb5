"""The authorization server's route table: every path it answers, in one list.

``/fhir/.well-known/...`` reaches this router (``fhir_server.app`` hands it over); everything else lives
under ``/auth``. Browser apps call discovery, JWKS, token, introspection and revocation cross-origin, so
those answer CORS preflights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from smart_auth import discovery
from smart_auth.discovery import PATHS
from smart_auth.http import form_request, json_response, oauth_endpoint, oauth_error, preflight, run_json, run_page
from smart_auth.pages import error_page
from smart_auth.server import FormRequest
from smart_auth.sessions import COOKIE

if TYPE_CHECKING:
    from smart_auth.service import SmartAuth

WELL_KNOWN = "/fhir/.well-known"


def install(auth: SmartAuth) -> None:
    """Add the authorization routes to ``auth.router``."""
    urls = auth.urls

    async def smart_configuration() -> Response:
        return json_response(discovery.smart_configuration(auth.issuer, urls))

    async def openid_configuration() -> Response:
        return json_response(discovery.openid_configuration(auth.issuer, urls))

    async def jwks() -> Response:
        return await run_json(lambda: json_response(auth.keys.jwks()))

    async def smart_style() -> Response:
        return json_response(discovery.APP_STYLE)

    async def authorize(request: Request) -> Response:
        try:
            form = await form_request(request, urls.authorize)
        except Exception as exc:
            return error_page(f"The authorization request cannot be read: {exc}")
        return await run_page(auth.authorization.respond, form, request.cookies.get(COOKIE))

    async def token(request: Request) -> Response:
        return await oauth_endpoint(request, urls.token, auth.server.create_token_response)

    async def introspect(request: Request) -> Response:
        return await oauth_endpoint(request, urls.introspect, _endpoint(auth, "introspection"))

    async def revoke(request: Request) -> Response:
        return await oauth_endpoint(request, urls.revoke, _endpoint(auth, "revocation"))

    async def launch(request: Request) -> Response:
        body = await request.body()
        return await oauth_endpoint(request, urls.launch, lambda form: auth.ehr_launch(form, _json(body)))

    async def post_only() -> Response:
        return oauth_error("invalid_request", "use POST", 405)

    async def cors_preflight() -> Response:
        return preflight()

    table: list[tuple[str, list[str], Any]] = [
        (f"{WELL_KNOWN}/smart-configuration", ["GET"], smart_configuration),
        (f"{WELL_KNOWN}/openid-configuration", ["GET"], openid_configuration),
        (PATHS["jwks"], ["GET"], jwks),
        (PATHS["style"], ["GET"], smart_style),
        (PATHS["authorize"], ["GET", "POST"], authorize),
        (PATHS["token"], ["POST"], token),
        (PATHS["introspect"], ["POST"], introspect),
        (PATHS["revoke"], ["POST"], revoke),
        (PATHS["launch"], ["POST"], launch),
    ]
    for path, methods, handler in table:
        auth.router.add_api_route(path, handler, methods=methods, include_in_schema=False)
        if methods == ["POST"]:
            auth.router.add_api_route(path, post_only, methods=["GET"], include_in_schema=False)
        if path != PATHS["authorize"]:
            auth.router.add_api_route(path, cors_preflight, methods=["OPTIONS"], include_in_schema=False)


def _endpoint(auth: SmartAuth, name: str) -> Any:
    def respond(form: FormRequest) -> Response:
        return auth.server.create_endpoint_response(name, form)

    return respond


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body.strip()[:1] in (b"{", b"[") else None
    except orjson.JSONDecodeError:
        return None
