"""Revoked tokens, seen by every worker process at once: in Redis when configured, in the database otherwise.

Keys are ``jti:<access token id>`` and ``grant:<grant id>`` (revoking a refresh token revokes its grant,
and with it every access token issued under that grant, RFC 7009 section 2.1). Each entry lives as long as
the tokens it stops would have lived.

Every FHIR request asks ``is_revoked``, so the answer must cost microseconds, not a round trip:

- Redis: each process keeps a mirror of the revoked keys, loaded at start and kept current by a
  subscription to the channel every revocation is published on (delivery within a millisecond);
- PostgreSQL without Redis: the same, with ``LISTEN``/``NOTIFY`` (the notification is sent in the
  revoking transaction, so it arrives only once the revocation is committed);
- SQLite: one indexed read on a connection kept per thread (about 7 us).

The revoking process updates its own mirror, then waits (at most ``ACK_TIMEOUT``) until every
listening process has acknowledged the revocation, so when ``revoke`` returns no worker anywhere still
accepts the token. While a mirror's subscription is down (reconnecting), checks go to the store itself,
so nothing revoked is ever let through.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import psycopg
import redis
from sqlalchemy import Connection, Engine, delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from fhir_server.storage.engine import is_sqlite
from fhir_server.storage.model import utc_now
from smart_auth.schema import auth_listener, auth_revocation, auth_revocation_ack

log = logging.getLogger("smart_auth.revocation")

REDIS_PREFIX = "fhir:revoked:"
REDIS_ACK_PREFIX = "fhir:revocation-ack:"
CHANNEL = "fhir_revoked"
RETRY_SECONDS = 1.0
ACK_TIMEOUT = 2.0  # seconds a revocation waits for the other processes' acknowledgements
HEARTBEAT_SECONDS = 5.0
LISTENER_STALE = timedelta(seconds=15)  # a PostgreSQL listener silent this long is gone


class Revocations(Protocol):
    def revoke(self, key: str, until: datetime) -> None:
        """Revoke ``key`` until ``until`` (naive UTC), after which the tokens are expired anyway."""

    def is_revoked(self, *keys: str) -> bool:
        """Whether any of ``keys`` is revoked."""

    def close(self) -> None:
        """Stop listening (server shutdown)."""


def _timestamp(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


def _message(key: str, until: datetime) -> tuple[str, str]:
    """A revocation announcement: (nonce, payload ``<until> <nonce> <key>``)."""
    nonce = uuid.uuid4().hex
    return nonce, f"{_timestamp(until)} {nonce} {key}"


def _parse(payload: str) -> tuple[float, str, str]:
    until, nonce, key = payload.split(" ", 2)
    return float(until), nonce, key


def _wait(acknowledged: Callable[[], int], expected: int) -> None:
    """Until ``expected`` listeners have acknowledged, or ``ACK_TIMEOUT`` passed (a listener that died)."""
    deadline = time.monotonic() + ACK_TIMEOUT
    while acknowledged() < expected:
        if time.monotonic() > deadline:
            log.warning("a revocation was not acknowledged by every listener within %.1f s", ACK_TIMEOUT)
            return
        time.sleep(0.001)


class Mirror:
    """This process's copy of the revoked keys, fed by a listener thread that reconnects on failure."""

    def __init__(self, name: str, listen: Callable[[Mirror], None]) -> None:
        self.id = uuid.uuid4().hex
        self._keys: dict[str, float] = {}
        self._lock = threading.Lock()
        self.healthy = False
        self.stopped = threading.Event()
        self._listen = listen
        self._thread = threading.Thread(target=self._run, name=f"revocations-{name}", daemon=True)
        self._thread.start()

    def add(self, key: str, until: float) -> None:
        with self._lock:
            self._keys[key] = until
            if len(self._keys) > 10_000:
                now = time.time()
                self._keys = {k: t for k, t in self._keys.items() if t > now}

    def load(self, items: Iterable[tuple[str, float]]) -> None:
        for key, until in items:
            self.add(key, until)

    def contains(self, keys: Iterable[str]) -> bool:
        now = time.time()
        return any(self._keys.get(key, 0.0) > now for key in keys)

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._listen(self)  # subscribes, loads the snapshot, sets healthy, returns when stopped
            except Exception as exc:
                if not self.stopped.is_set():
                    log.warning("revocation listener lost its connection (%s); checking the store meanwhile", exc)
            self.healthy = False
            self.stopped.wait(RETRY_SECONDS)

    def close(self) -> None:
        self.stopped.set()
        self._thread.join(timeout=5)


class RedisRevocations:
    """Revocations shared through Redis: keys with a TTL, announced on a pub/sub channel."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.mirror = Mirror("redis", self._listen)

    def revoke(self, key: str, until: datetime) -> None:
        seconds = int((until - utc_now()).total_seconds()) + 1
        if seconds <= 0:
            return
        self.client.set(REDIS_PREFIX + key, b"1", ex=seconds)
        self.mirror.add(key, _timestamp(until))
        nonce, payload = _message(key, until)
        receivers = int(self.client.publish(CHANNEL, payload))
        _wait(lambda: int(self.client.scard(REDIS_ACK_PREFIX + nonce)), receivers)
        self.client.delete(REDIS_ACK_PREFIX + nonce)

    def is_revoked(self, *keys: str) -> bool:
        if self.mirror.healthy:
            return self.mirror.contains(keys)
        return bool(self.client.exists(*(REDIS_PREFIX + key for key in keys)))

    def close(self) -> None:
        self.mirror.close()
        self.client.close()

    def _listen(self, mirror: Mirror) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL)  # first subscribe, then read the snapshot: nothing falls between
            now = time.time()
            for name in self.client.scan_iter(match=REDIS_PREFIX + "*", count=1000):
                ttl = self.client.ttl(name)
                if ttl > 0:
                    mirror.add(name.decode()[len(REDIS_PREFIX) :], now + ttl)
            mirror.healthy = True
            while not mirror.stopped.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is not None:
                    until, nonce, key = _parse(message["data"].decode())
                    mirror.add(key, until)
                    self.client.sadd(REDIS_ACK_PREFIX + nonce, mirror.id)
                    self.client.expire(REDIS_ACK_PREFIX + nonce, 60)
        finally:
            pubsub.close()


class DatabaseRevocations:
    """Revocations in the ``auth_revocation`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def revoke(self, key: str, until: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(auth_revocation).where(auth_revocation.c.expires_at < utc_now()))
            try:
                with conn.begin_nested():
                    conn.execute(insert(auth_revocation), {"key": key, "expires_at": until})
            except IntegrityError:
                pass  # already revoked
            nonce = self._announce(conn, key, until)
        if nonce is not None:
            self._await_acknowledgements(nonce)

    def _announce(self, conn: Connection, key: str, until: datetime) -> str | None:
        """Tell the other processes (PostgreSQL: the nonce to wait for); nothing to do on SQLite."""
        return None

    def _await_acknowledgements(self, nonce: str) -> None:
        return None

    def is_revoked(self, *keys: str) -> bool:
        table = auth_revocation
        stmt = select(table.c.key).where(table.c.key.in_(keys), table.c.expires_at > utc_now()).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def close(self) -> None:
        return None


class SqliteRevocations(DatabaseRevocations):
    """SQLite: the check reads the table on a plain connection kept per thread (no pool, no SQL building)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.path = str(engine.url.database)
        self._local = threading.local()

    def is_revoked(self, *keys: str) -> bool:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(self.path, check_same_thread=False)
        marks = ", ".join("?" * len(keys))
        query = f"SELECT 1 FROM auth_revocation WHERE key IN ({marks}) AND expires_at > ? LIMIT 1"
        now = utc_now().strftime("%Y-%m-%d %H:%M:%S.%f")  # how SQLAlchemy stores a DateTime in SQLite
        return conn.execute(query, (*keys, now)).fetchone() is not None


class PostgresRevocations(DatabaseRevocations):
    """PostgreSQL: a mirror fed by ``LISTEN``; the revoking transaction sends the ``NOTIFY``."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.mirror = Mirror("postgres", self._listen)

    def revoke(self, key: str, until: datetime) -> None:
        self.mirror.add(key, _timestamp(until))
        super().revoke(key, until)

    def _announce(self, conn: Connection, key: str, until: datetime) -> str | None:
        nonce, payload = _message(key, until)
        conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})
        return nonce

    def _await_acknowledgements(self, nonce: str) -> None:
        with self.engine.connect() as conn:
            alive = select(func.count()).where(auth_listener.c.heartbeat_at > utc_now() - LISTENER_STALE)
            expected = int(conn.execute(alive).scalar_one())
            acks = select(func.count()).where(auth_revocation_ack.c.nonce == nonce)
            _wait(lambda: int(conn.execute(acks).scalar_one()), expected)
            conn.execute(delete(auth_revocation_ack).where(auth_revocation_ack.c.nonce == nonce))
            conn.commit()

    def is_revoked(self, *keys: str) -> bool:
        if self.mirror.healthy:
            return self.mirror.contains(keys)
        return super().is_revoked(*keys)

    def close(self) -> None:
        self.mirror.close()

    def _listen(self, mirror: Mirror) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")  # first listen, then read the snapshot
            rows = conn.execute(
                "SELECT key, expires_at FROM auth_revocation WHERE expires_at > now() AT TIME ZONE 'UTC'"
            )
            mirror.load((key, _timestamp(expires)) for key, expires in rows.fetchall())
            beat = "INSERT INTO auth_listener (listener_id, heartbeat_at) VALUES (%s, now() AT TIME ZONE 'UTC') "
            beat += "ON CONFLICT (listener_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"
            conn.execute(beat, (mirror.id,))
            mirror.healthy = True
            last_beat = time.monotonic()
            try:
                while not mirror.stopped.is_set():
                    for notice in conn.notifies(timeout=0.5):
                        until, nonce, key = _parse(notice.payload)
                        mirror.add(key, until)
                        conn.execute(
                            "INSERT INTO auth_revocation_ack (nonce, listener_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                            (nonce, mirror.id),
                        )
                    if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                        conn.execute(beat, (mirror.id,))
                        last_beat = time.monotonic()
            finally:
                if not conn.closed:
                    conn.execute("DELETE FROM auth_listener WHERE listener_id = %s", (mirror.id,))


def revocations(engine: Engine, redis_url: str | None) -> Revocations:
    """Redis when configured (several server processes share it), the database otherwise."""
    if redis_url:
        return RedisRevocations(redis_url)
    return SqliteRevocations(engine) if is_sqlite(engine) else PostgresRevocations(engine)
