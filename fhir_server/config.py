"""Settings: one object read from ``FHIR_*`` environment variables, overridable by CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Server configuration. ``base_url`` is the public base used in Location headers and links."""

    database_url: str = "sqlite:///./fhir.db"
    base_url: str = "http://127.0.0.1:8080/fhir"
    redis_url: str | None = None
    partition: str = "default"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    mllp_port: int = 2575  # HL7 v2 MLLP listener of `serve` and `mllp` (0: serve starts none)
    mllp_tls_cert: str | None = None  # PEM certificate chain: MLLP over TLS when set (with mllp_tls_key)
    mllp_tls_key: str | None = None
    mllp_idle_timeout: float = 300.0  # seconds before an idle MLLP connection is closed
    mllp_max_message_bytes: int = 16 * 1024 * 1024  # larger frames get an AR and are discarded
    mllp_charset: str = "latin-1"  # for HL7 v2 messages without MSH-18 that are not valid UTF-8
    threads: int = 16
    max_body_bytes: int = 64 * 1024 * 1024
    default_page_size: int = 20
    max_page_size: int = 1000
    search_timeout_ms: int = 30000
    auto_migrate: bool = True
    auth: bool = True  # SMART authorization enforced; FHIR_AUTH=off for local experiments only
    export_dir: str = "./exports"  # Bulk Data $export output files
    export_expiry_seconds: int = 86400  # how long finished exports stay downloadable
    export_workers: int = 1  # background threads per process running $export jobs (0: none here)
    export_stale_seconds: int = 60  # a running job silent this long was interrupted: another worker takes it
    export_file_resources: int = 100_000  # resources per NDJSON file before a new one starts
    rxnorm_coding: bool = True  # add RxNorm codings to medications coded by NDC or text (FHIR_RXNORM_CODING)

    @classmethod
    def from_env(cls) -> Settings:
        host = os.environ.get("FHIR_HOST", cls.host)
        port = _env_int("FHIR_PORT", cls.port)
        return cls(
            database_url=os.environ.get("FHIR_DATABASE_URL", cls.database_url),
            base_url=os.environ.get("FHIR_BASE_URL", f"http://{host}:{port}/fhir"),
            redis_url=os.environ.get("FHIR_REDIS_URL") or None,
            partition=os.environ.get("FHIR_PARTITION", cls.partition),
            host=host,
            port=port,
            workers=_env_int("FHIR_WORKERS", cls.workers),
            mllp_port=_env_int("FHIR_MLLP_PORT", cls.mllp_port),
            mllp_tls_cert=os.environ.get("FHIR_MLLP_TLS_CERT") or None,
            mllp_tls_key=os.environ.get("FHIR_MLLP_TLS_KEY") or None,
            mllp_idle_timeout=float(os.environ.get("FHIR_MLLP_IDLE_TIMEOUT") or cls.mllp_idle_timeout),
            mllp_max_message_bytes=_env_int("FHIR_MLLP_MAX_MESSAGE_BYTES", cls.mllp_max_message_bytes),
            mllp_charset=os.environ.get("FHIR_MLLP_CHARSET", cls.mllp_charset),
            threads=_env_int("FHIR_THREADS", cls.threads),
            max_body_bytes=_env_int("FHIR_MAX_BODY_BYTES", cls.max_body_bytes),
            default_page_size=_env_int("FHIR_DEFAULT_PAGE_SIZE", cls.default_page_size),
            max_page_size=_env_int("FHIR_MAX_PAGE_SIZE", cls.max_page_size),
            search_timeout_ms=_env_int("FHIR_SEARCH_TIMEOUT_MS", cls.search_timeout_ms),
            auto_migrate=_env_bool("FHIR_AUTO_MIGRATE", cls.auto_migrate),
            auth=_env_bool("FHIR_AUTH", cls.auth),
            export_dir=os.environ.get("FHIR_EXPORT_DIR", cls.export_dir),
            export_expiry_seconds=_env_int("FHIR_EXPORT_EXPIRY_SECONDS", cls.export_expiry_seconds),
            export_workers=_env_int("FHIR_EXPORT_WORKERS", cls.export_workers),
            export_stale_seconds=_env_int("FHIR_EXPORT_STALE_SECONDS", cls.export_stale_seconds),
            export_file_resources=_env_int("FHIR_EXPORT_FILE_RESOURCES", cls.export_file_resources),
            rxnorm_coding=_env_bool("FHIR_RXNORM_CODING", cls.rxnorm_coding),
        )

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given (non-None) fields replaced; used by CLI flags."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
