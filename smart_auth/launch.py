"""EHR launch (https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch): the EHR
registers the context it is launching an app in and gets an opaque ``launch`` value to hand the app; the
app sends it back on its authorize request (with scope ``launch``) and the token response carries the
context.

Only clients registered with ``--ehr-launch`` may register launches (``POST /auth/launch`` with the
client's own authentication: Basic, POST secret or ``private_key_jwt``).
"""

from __future__ import annotations

from typing import Any

import orjson
from authlib.oauth2.rfc6749 import InvalidRequestError
from sqlalchemy import Engine, delete, insert, select

from fhir_server.storage.model import utc_now
from smart_auth import lifetimes
from smart_auth.credentials import digest, new_secret
from smart_auth.records import Records
from smart_auth.schema import auth_launch
from smart_auth.users import is_fhir_user


def launch_context(body: Any, records: Records) -> dict[str, Any]:
    """The launch context an EHR asks for (``patient``, ``encounter``, ``fhirUser``, ``fhirContext``,
    ``need_patient_banner``, ``intent``), checked against the stored resources."""
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object with patient, encounter, fhirUser, fhirContext")
    patient, encounter, user = body.get("patient"), body.get("encounter"), body.get("fhirUser", body.get("user"))
    if patient is not None and (not isinstance(patient, str) or records.patient(patient) is None):
        raise InvalidRequestError("patient must be the id of a stored Patient")
    if encounter is not None and (
        not isinstance(encounter, str) or patient is None or records.encounter(encounter, patient) is None
    ):
        raise InvalidRequestError("encounter must be the id of a stored Encounter of the patient")
    if user is not None and not (isinstance(user, str) and is_fhir_user(user)):
        raise InvalidRequestError("fhirUser must be a reference like Practitioner/123")
    fhir_context = body.get("fhirContext")
    if fhir_context is not None and not (
        isinstance(fhir_context, list) and all(isinstance(item, dict) for item in fhir_context)
    ):
        raise InvalidRequestError("fhirContext must be a list of objects (reference, canonical or identifier)")
    banner = body.get("need_patient_banner", False)
    intent = body.get("intent")
    if not isinstance(banner, bool) or (intent is not None and not isinstance(intent, str)):
        raise InvalidRequestError("need_patient_banner is a boolean and intent a string")
    context = {
        "patient": patient,
        "encounter": encounter,
        "fhirUser": user,
        "fhirContext": fhir_context,
        "need_patient_banner": banner,
        "intent": intent,
    }
    return {name: value for name, value in context.items() if value is not None}


def create_launch(engine: Engine, context: dict[str, Any]) -> str:
    """Store ``context`` behind a new opaque launch value (kept as a digest) and return the value."""
    value = new_secret()
    now = utc_now()
    with engine.begin() as conn:
        conn.execute(delete(auth_launch).where(auth_launch.c.expires_at < now))
        conn.execute(
            insert(auth_launch),
            {
                "launch_hash": digest(value),
                "context": orjson.dumps(context).decode(),
                "created_at": now,
                "expires_at": now + lifetimes.EHR_LAUNCH,
            },
        )
    return value


def find_launch(engine: Engine, value: str) -> dict[str, Any] | None:
    """The context of an unexpired launch."""
    table = auth_launch
    stmt = select(table.c.context).where(table.c.launch_hash == digest(value), table.c.expires_at > utc_now())
    with engine.connect() as conn:
        found = conn.execute(stmt).scalar_one_or_none()
    return orjson.loads(found) if found else None
