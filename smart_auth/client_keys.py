"""The public keys of ``confidential-asymmetric`` clients: their registered JWKS, or the JWKS at their
registered URL, fetched with httpx and reused for ``CLIENT_JWKS_CACHE`` seconds (fetched again sooner
when an assertion names a ``kid`` the cached set lacks, at most every ``REFETCH_AFTER`` seconds).
"""

from __future__ import annotations

import threading
import time

import httpx
from authlib.oauth2.rfc6749 import InvalidClientError
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from smart_auth import lifetimes
from smart_auth.clients import Client

FETCH_TIMEOUT = 5.0
REFETCH_AFTER = 10.0


class ClientKeys:
    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, KeySet]] = {}
        self._lock = threading.Lock()

    def key_set(self, client: Client, kid: str | None) -> KeySet:
        """The keys that may have signed ``client``'s assertion, or InvalidClientError."""
        if client.jwks is not None:
            return _import(client.jwks)
        if client.jwks_uri is None:
            raise InvalidClientError(description="the client has no registered keys", status_code=401)
        fetched_at, keys = self._cache.get(client.jwks_uri, (0.0, KeySet([])))
        age = time.monotonic() - fetched_at
        unknown_kid = kid is not None and all(key.kid != kid for key in keys.keys)
        if age > lifetimes.CLIENT_JWKS_CACHE or (unknown_kid and age > REFETCH_AFTER):
            keys = self._fetch(client.jwks_uri)
        return keys

    def _fetch(self, url: str) -> KeySet:
        try:
            response = httpx.get(url, timeout=FETCH_TIMEOUT, follow_redirects=False)
            response.raise_for_status()
            keys = _import(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise InvalidClientError(description="the client's JWKS URL could not be read", status_code=401) from exc
        with self._lock:
            self._cache[url] = (time.monotonic(), keys)
        return keys


def _import(jwks: object) -> KeySet:
    try:
        return KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise InvalidClientError(description="the client's JWKS cannot be read", status_code=401) from exc
