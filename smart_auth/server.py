"""authlib's core ``AuthorizationServer`` adapted to this server (authlib 1.9 has no Starlette integration).

Routes read the HTTP request (async) into a ``FormRequest``; the flow then runs in a worker thread through
authlib: client authentication, grant dispatch, code and redirect URI checks, PKCE, error responses.
Every OAuth error becomes a JSON body ``{"error", "error_description"}`` (RFC 6749 section 5.2), or a
redirect to the client when authlib has validated its redirect URI.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Error, OAuth2Payload, OAuth2Request
from sqlalchemy import Engine
from starlette.responses import Response

from smart_auth.authorization_code import AudienceCheck, S256CodeChallenge, SmartAuthorizationCodeGrant
from smart_auth.client_assertion import PrivateKeyJwt
from smart_auth.client_credentials import BackendServicesGrant
from smart_auth.client_keys import ClientKeys
from smart_auth.clients import Client, find_client
from smart_auth.introspection import SmartIntrospection, bearer_caller
from smart_auth.issuance import TokenIssuer
from smart_auth.refresh_token import SmartRefreshTokenGrant
from smart_auth.revocation import Revocations
from smart_auth.token_revocation import SmartRevocation
from smart_auth.tokens import TokenVerifier

CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}


class FormPayload(OAuth2Payload):
    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in items:
            self._datalist[name].append(value)
        self._data = {name: values[0] for name, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class FormRequest(OAuth2Request):
    """An HTTP request as authlib sees it: query and form values, headers, the client's URL."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        query: Sequence[tuple[str, str]],
        form: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._args = FormPayload(query).data
        self._form = FormPayload(form)
        self.payload = FormPayload([*query, *form])
        self.launch_context: dict[str, Any] = {}

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form.data

    def form_list(self, name: str) -> list[str]:
        return list(self._form.datalist.get(name, []))


class SmartAuthorizationServer(AuthorizationServer):
    """Grants, client authentication methods and endpoints of the SMART authorization server."""

    def __init__(
        self,
        engine: Engine,
        issuer: str,
        token_url: str,
        tokens: TokenIssuer,
        verifier: TokenVerifier,
        revocations: Revocations,
    ) -> None:
        super().__init__(scopes_supported=None)  # unknown scopes are dropped, not refused
        self.engine = engine
        self.issuer = issuer
        self.tokens = tokens
        self.verifier = verifier
        self.revocations = revocations
        self.register_client_auth_method("private_key_jwt", PrivateKeyJwt(engine, token_url, ClientKeys()))
        self.register_client_auth_method("bearer", bearer_caller(verifier))
        self.register_grant(SmartAuthorizationCodeGrant, [S256CodeChallenge(required=True), AudienceCheck(issuer)])
        self.register_grant(SmartRefreshTokenGrant)
        self.register_grant(BackendServicesGrant)
        self.register_endpoint(SmartIntrospection)
        self.register_endpoint(SmartRevocation)

    def query_client(self, client_id: str) -> Client | None:
        return find_client(self.engine, client_id) if isinstance(client_id, str) else None

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request  # routes build it before the flow leaves the event loop

    def handle_response(self, status: int, body: Any, headers: Sequence[tuple[str, str]]) -> Response:
        content = orjson.dumps(body) if isinstance(body, dict) else (body or b"")
        return Response(content, status_code=status, headers={**dict(headers), **CORS_HEADERS})

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        if error.error == "invalid_client":
            error.status_code = 401  # RFC 6749 section 5.2: always 401 here, with WWW-Authenticate
        error.description = error.get_error_description() or error.error.replace("_", " ")
        return super().handle_error_response(request, error)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib's signal hook: nothing listens."""
