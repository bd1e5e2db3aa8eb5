"""Authorization tables: registered clients, users, signing keys, launches, codes, grants and revocations.

Global to the server (an OAuth client or a signing key is not tenant data). Secrets are never stored in
the clear: client secrets and passwords as Argon2 hashes, codes, launches and refresh tokens as SHA-256
digests of the random values handed out.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, String, Table, Text

from fhir_server.storage.schema import metadata

DIGEST = String(64)  # hex SHA-256 of a random secret

auth_client = Table(
    "auth_client",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    # public | confidential-symmetric | confidential-asymmetric
    Column("kind", String(40), nullable=False),
    Column("secret_hash", Text, nullable=True),
    Column("redirect_uris", Text, nullable=False),  # JSON list
    Column("scope", Text, nullable=False),  # the scopes the client may be granted, space-separated
    Column("jwks_uri", Text, nullable=True),
    Column("jwks", Text, nullable=True),  # inline JWKS (JSON)
    Column("ehr_launch", Boolean, nullable=False, default=False),  # may register EHR launches (POST /auth/launch)
    Column("created_at", DateTime, nullable=False),
)

auth_user = Table(
    "auth_user",
    metadata,
    Column("login", String(128), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("fhir_user", String(200), nullable=True),  # Practitioner/123, Patient/abc, ...
    Column("totp_secret", String(64), nullable=True),
    Column("created_at", DateTime, nullable=False),
)

# Token signing keys: the newest unretired key signs; retired keys stay published until tokens they
# signed have expired.
auth_signing_key = Table(
    "auth_signing_key",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("private_jwk", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("retired_at", DateTime, nullable=True),
)

# An EHR launch: the context the EHR hands over behind the opaque ``launch`` value.
auth_launch = Table(
    "auth_launch",
    metadata,
    Column("launch_hash", DIGEST, primary_key=True),
    Column("context", Text, nullable=False),  # JSON: patient, encounter, fhirUser, fhirContext, ...
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

# An authorization code, one use.
auth_code = Table(
    "auth_code",
    metadata,
    Column("code_hash", DIGEST, primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("login", String(128), nullable=True),
    Column("context", Text, nullable=False),  # JSON: patient, encounter, fhirUser, nonce, ...
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(10), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    # Set when the code is exchanged: a second exchange revokes this grant (RFC 6749 section 4.1.2).
    Column("grant_id", String(64), nullable=True),
)

# One authorization of a client (by a user, or by itself): what its refresh tokens carry forward.
auth_grant = Table(
    "auth_grant",
    metadata,
    Column("grant_id", String(64), primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("login", String(128), nullable=True),
    Column("scope", Text, nullable=False),
    Column("context", Text, nullable=False),  # JSON
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

# Refresh tokens: rotated on each use; a used one presented again revokes its whole grant.
auth_refresh_token = Table(
    "auth_refresh_token",
    metadata,
    Column("token_hash", DIGEST, primary_key=True),
    Column("grant_id", String(64), nullable=False, index=True),
    Column("scope", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("used_at", DateTime, nullable=True),
)

# Revoked access tokens (``jti:<id>``) and grants (``grant:<id>``), when no Redis is configured.
auth_revocation = Table(
    "auth_revocation",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("expires_at", DateTime, nullable=False),
)

# PostgreSQL processes listening for revocations (heartbeat every few seconds), and which of them has
# acknowledged which announcement: a revocation returns once every live listener has it.
auth_listener = Table(
    "auth_listener",
    metadata,
    Column("listener_id", String(64), primary_key=True),
    Column("heartbeat_at", DateTime, nullable=False),
)

auth_revocation_ack = Table(
    "auth_revocation_ack",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("listener_id", String(64), primary_key=True),
)

# Client assertion ``jti`` values already used (replay protection for private_key_jwt).
auth_assertion = Table(
    "auth_assertion",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("jti", String(200), primary_key=True),
    Column("expires_at", DateTime, nullable=False),
    Index(None, "expires_at"),
)

# Browser sessions of logged-in users (the authorize pages), by cookie digest.
auth_session = Table(
    "auth_session",
    metadata,
    Column("session_hash", DIGEST, primary_key=True),
    Column("login", String(128), nullable=False),
    Column("awaiting_totp", Boolean, nullable=False, default=False),  # password checked, TOTP code not yet
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)
