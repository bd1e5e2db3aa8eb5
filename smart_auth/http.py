"""HTTP plumbing shared by the authorization routes: reading a request into authlib's form, running the
(blocking) flow in a worker thread, CORS for the endpoints browser apps call, and the one place where an
unexpected failure becomes an OAuth ``server_error`` body or an error page instead of a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import orjson
from anyio import to_thread
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from starlette.requests import Request
from starlette.responses import Response

from smart_auth.pages import error_page
from smart_auth.server import CORS_HEADERS, FormRequest

log = logging.getLogger("smart_auth")
T = TypeVar("T")

PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}


async def form_request(request: Request, url: str) -> FormRequest:
    """``request`` as authlib's request; ``url`` is the endpoint's public URL (what clients called)."""
    form: list[tuple[str, str]] = []
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        try:
            form = [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
        except Exception as exc:
            raise InvalidRequestError("the form body cannot be read") from exc
    query = list(request.query_params.multi_items())
    uri = f"{url}?{request.url.query}" if request.url.query else url
    return FormRequest(request.method, uri, request.headers, query, form)


def json_response(body: dict[str, Any], status: int = 200, *, cors: bool = True) -> Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **(CORS_HEADERS if cors else {})}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def error_json(error: OAuth2Error) -> Response:
    """An OAuth error raised outside authlib's flow, as its JSON body."""
    description = error.get_error_description() or error.error.replace("_", " ")
    return oauth_error(error.error, description, error.status_code)


def preflight() -> Response:
    """The answer to a CORS preflight (``OPTIONS``) from a browser app."""
    return Response(status_code=204, headers=PREFLIGHT_HEADERS)


async def oauth_endpoint(request: Request, url: str, work: Callable[[FormRequest], Response]) -> Response:
    """Read ``request`` and answer it with ``work`` (an OAuth JSON endpoint)."""
    try:
        form = await form_request(request, url)
    except OAuth2Error as error:
        return error_json(error)
    return await run_json(work, form)


async def run_json(work: Callable[..., Response], *args: Any) -> Response:
    """Run ``work`` in a thread; an OAuth error or an unexpected failure becomes an OAuth JSON body."""
    try:
        return await to_thread.run_sync(partial(work, *args))
    except OAuth2Error as error:
        return error_json(error)
    except Exception:
        log.exception("authorization request failed")
        return oauth_error("server_error", "the authorization server failed; see its log", 500)


async def run_page(work: Callable[..., Response], *args: Any) -> Response:
    """Run ``work`` in a thread; an unexpected failure becomes an error page."""
    try:
        return await to_thread.run_sync(partial(work, *args))
    except Exception:
        log.exception("authorization page failed")
        return error_page("The server failed to handle this request. Please try again later.", 500)
