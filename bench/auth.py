"""What authorization costs: token checking per request, and the token endpoint's throughput.

1. In process, per revocation store (SQLite, PostgreSQL, Redis): the check every FHIR request makes
   (signature verified once per token, then cached; expiry; revocation lookup; the access policy),
   p50/p99 over many calls, and the first check of a new token (signature included). Target: p99 < 0.2 ms.
2. Over HTTP, a ``fhir-server serve`` (1 worker, SQLite): sequential reads of one Patient with
   authorization off and on; the difference is what a request pays for its token end to end.
3. The token endpoint: Backend Services ``client_credentials`` grants (RS384 ``private_key_jwt``
   assertions) per second from 4 concurrent clients.

Usage: python bench/auth.py [--calls N] [--reads N] [--grants N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import server
from fhir_server.api.access import AccessPolicy
from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from smart_auth.clients import add_client
from smart_auth.keys import SigningKeys
from smart_auth.revocation import Revocations, revocations
from smart_auth.tokens import TokenVerifier, issue_access_token

REDIS = "redis://127.0.0.1:6379/0"
ISSUER = "http://127.0.0.1:8080/fhir"
TARGET_P99_MS = 0.2


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@contextmanager
def stores() -> Iterator[list[tuple[str, SigningKeys, Revocations]]]:
    with server.database("sqlite") as sqlite_url, server.database("postgres") as postgres_url:
        engines = [make_engine(sqlite_url), make_engine(postgres_url)]
        for engine in engines:
            upgrade(engine)
        configured: list[tuple[str, SigningKeys, Revocations]] = [
            ("SQLite table", SigningKeys(engines[0]), revocations(engines[0], None)),
            ("PostgreSQL + LISTEN", SigningKeys(engines[1]), revocations(engines[1], None)),
            ("Redis + pub/sub", SigningKeys(engines[0]), revocations(engines[0], REDIS)),
        ]
        time.sleep(1)  # the listeners load their snapshot
        yield configured
        for _, _, store in configured:
            store.close()
        for engine in engines:
            engine.dispose()


def time_calls(call: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def token_check(calls: int) -> None:
    print(f"token check per request, {calls} calls (target p99 < {TARGET_P99_MS} ms)")
    with stores() as configured:
        for name, keys, store in configured:
            measure_store(name, keys, store, calls)


def measure_store(name: str, keys: SigningKeys, store: Revocations, calls: int) -> None:
    verifier = TokenVerifier(keys, store, ISSUER, ISSUER)

    def mint() -> str:
        encoded, _ = issue_access_token(
            keys,
            ISSUER,
            ISSUER,
            client_id="bench",
            scope="patient/*.rs",
            subject="bench",
            lifetime=3600,
            grant_id=uuid.uuid4().hex,
            patient="p1",
        )
        return encoded

    token = mint()
    for _ in range(200):  # warm-up: connections, caches
        AccessPolicy.of(verifier.verify(token))
    p50, p99 = percentiles(time_calls(lambda: AccessPolicy.of(verifier.verify(token)), calls))
    fresh = iter([mint() for _ in range(500)])
    f50, f99 = percentiles(time_calls(lambda: AccessPolicy.of(verifier.verify(next(fresh))), 500))
    print(f"  {name:24} known token p50 {p50:.3f} ms p99 {p99:.3f} ms | first sight p50 {f50:.3f} ms p99 {f99:.3f} ms")


def read_latency(reads: int) -> None:
    print(f"HTTP read of one Patient, {reads} sequential requests, SQLite, 1 worker")
    results = {}
    for mode in ("off", "on"):
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/bench.db"
            with server.running_server(url, env={"FHIR_AUTH": mode}) as base:
                headers = {}
                if mode == "on":
                    engine = make_engine(url)
                    encoded, _ = issue_access_token(
                        SigningKeys(engine),
                        base,
                        base,
                        client_id="bench",
                        scope="system/*.cruds",
                        subject="bench",
                        lifetime=3600,
                    )
                    engine.dispose()
                    headers["Authorization"] = f"Bearer {encoded}"
                with httpx.Client(base_url=base + "/", headers=headers) as http:
                    created = http.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Bench"}]})
                    assert created.status_code == 201, created.text
                    path = f"Patient/{created.json()['id']}"
                    for _ in range(300):
                        http.get(path)
                    results[mode] = percentiles(time_calls(lambda p=path, h=http: h.get(p).raise_for_status(), reads))
        print(f"  auth {mode:3}: p50 {results[mode][0]:.3f} ms p99 {results[mode][1]:.3f} ms")
    print(
        f"  difference: p50 {results['on'][0] - results['off'][0]:+.3f} ms, "
        f"p99 {results['on'][1] - results['off'][1]:+.3f} ms"
    )


def token_endpoint(grants: int, clients: int = 4) -> None:
    """Backend Services grants per second: each request carries a fresh RS384 assertion (signed beforehand,
    so the figure is the server's)."""
    print(f"token endpoint, client_credentials with private_key_jwt (RS384), {grants} grants, {clients} clients")
    for backend in ("sqlite", "postgres"):
        with server.database(backend) as url, server.running_server(url, env={"FHIR_AUTH": "on"}) as base:
            measure_grants(backend, url, base.removesuffix("/fhir") + "/auth/token", grants, clients)


def measure_grants(backend: str, url: str, token_url: str, grants: int, clients: int) -> None:
    engine = make_engine(url)
    key = RSAKey.generate_key(2048, parameters={"kid": "bench"}, private=True)
    jwks = {"keys": [key.as_dict(private=False)]}
    client, _ = add_client(engine, "bench backend", "confidential-asymmetric", scope="system/*.rs", jwks=jwks)
    engine.dispose()
    forms = [
        {
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion(key, client.client_id, token_url),
        }
        for _ in range(grants + 50)
    ]
    with httpx.Client() as http:  # warm-up
        for form in forms[:50]:
            http.post(token_url, data=form).raise_for_status()
    latencies: list[float] = []

    def grant_all(part: list[dict[str, str]]) -> None:
        with httpx.Client() as http:
            for form in part:
                start = time.perf_counter()
                http.post(token_url, data=form).raise_for_status()
                latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(grant_all, [forms[50 + n :: clients] for n in range(clients)]))
    elapsed = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    print(f"  {backend:8}: {grants / elapsed:.0f} grants/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def assertion(key: RSAKey, client_id: str, token_url: str) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240, "jti": uuid.uuid4().hex}
    return jwt.encode({"alg": "RS384", "kid": "bench", "typ": "JWT"}, claims, key, algorithms=["RS384"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--grants", type=int, default=2000)
    args = parser.parse_args()
    token_check(args.calls)
    read_latency(args.reads)
    token_endpoint(args.grants)


if __name__ == "__main__":
    main()
