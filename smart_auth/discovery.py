"""Discovery documents: ``.well-known/smart-configuration``
(https://hl7.org/fhir/smart-app-launch/conformance.html), ``.well-known/openid-configuration`` (OpenID
Connect Discovery 1.0), and the app style document ``smart_style_url`` points at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smart_auth.client_assertion import ALGORITHMS
from smart_auth.keys import ALGORITHM

CAPABILITIES = (
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-standalone-encounter",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
)
SCOPES_SUPPORTED = (
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    *(f"{context}/*.{permissions}" for context in ("patient", "user", "system") for permissions in ("rs", "cruds")),
    *(f"{context}/*.{permissions}" for context in ("patient", "user", "system") for permissions in ("read", "*")),
)
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")

# The example style of https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#styling
APP_STYLE = {
    "color_background": "#edeae3",
    "color_error": "#9e2d2d",
    "color_highlight": "#69b5ce",
    "color_modal_backdrop": "",
    "color_success": "#498e49",
    "color_text": "#303030",
    "dim_border_radius": "6px",
    "dim_font_size": "13px",
    "dim_spacing_size": "20px",
    "font_family_body": "Georgia, Times, 'Times New Roman', serif",
    "font_family_heading": "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif",
}


# The authorization server's endpoints, below the public root (``http://host:port``).
PATHS = {
    "authorize": "/auth/authorize",
    "token": "/auth/token",
    "introspect": "/auth/introspect",
    "revoke": "/auth/revoke",
    "jwks": "/auth/jwks",
    "launch": "/auth/launch",
    "style": "/auth/smart-style.json",
}


@dataclass(frozen=True)
class EndpointUrls:
    """The absolute URLs of the authorization server's endpoints (``PATHS`` below the public root)."""

    authorize: str
    token: str
    introspect: str
    revoke: str
    jwks: str
    launch: str
    style: str

    @classmethod
    def under(cls, root: str) -> EndpointUrls:
        return cls(**{name: f"{root}{path}" for name, path in PATHS.items()})


def smart_configuration(issuer: str, urls: EndpointUrls) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "introspection_endpoint": urls.introspect,
        "revocation_endpoint": urls.revoke,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": list(SCOPES_SUPPORTED),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": list(CAPABILITIES),
    }


def openid_configuration(issuer: str, urls: EndpointUrls) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "introspection_endpoint": urls.introspect,
        "revocation_endpoint": urls.revoke,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": ["openid", "fhirUser", "profile", "offline_access", "online_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
    }
