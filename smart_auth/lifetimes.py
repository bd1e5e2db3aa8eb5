"""How long each thing the authorization server hands out stays valid, in one place."""

from __future__ import annotations

from datetime import timedelta

APP_ACCESS_TOKEN = 3600  # seconds: access tokens of app launches (authorization code, refresh)
BACKEND_ACCESS_TOKEN = 300  # seconds: Backend Services tokens (SMART recommends at most 5 minutes)
ID_TOKEN = 3600  # seconds
AUTHORIZATION_CODE = timedelta(minutes=2)
EHR_LAUNCH = timedelta(minutes=10)  # between POST /auth/launch and the app's authorize request
LOGIN_SESSION = timedelta(hours=12)
OFFLINE_GRANT = timedelta(days=90)  # offline_access: refresh tokens work until then (or revocation)
ONLINE_GRANT = LOGIN_SESSION  # online_access: refresh tokens last as long as a login session
CLIENT_ASSERTION_MAX = 300  # seconds: a client assertion's exp is at most this far in the future
CLIENT_JWKS_CACHE = 300  # seconds a fetched client JWKS is reused
