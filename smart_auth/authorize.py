"""The authorization endpoint (``GET``/``POST /auth/authorize``, RFC 6749 section 4.1.1 and
https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code) and its pages:
sign-in (and a TOTP step for users who have a TOTP secret), patient and encounter pickers for standalone
launches, and the consent page, after which the app gets its code.

Every page form posts back to the endpoint with the authorization request in hidden fields, so each step
re-validates it through authlib. What a form chose (a patient, an encounter, the approved scopes) is
honoured only with the session's CSRF token. An invalid ``client_id`` or ``redirect_uri`` gets an error
page, never a redirect; other errors go back to the app as ``error=...&state=...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError, OAuth2Error
from sqlalchemy import Engine
from starlette.responses import Response

from smart_auth import scopes
from smart_auth.clients import Client
from smart_auth.launch import find_launch
from smart_auth.pages import error_page, keep_session, render
from smart_auth.records import Records
from smart_auth.server import FormRequest, SmartAuthorizationServer
from smart_auth.sessions import Session, Sessions
from smart_auth.users import User, authenticate, find_user

REQUEST_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "launch",
    "code_challenge",
    "code_challenge_method",
    "nonce",
)
NO_ENCOUNTER = "none"


@dataclass
class Visit:
    """One request to the endpoint: its session (replaced on sign-in) and the form step it submitted."""

    request: FormRequest
    session: Session
    trusted: bool  # a POST from one of our pages (valid CSRF token)
    grant: Any = None
    client: Client | None = None
    chosen: list[tuple[str, str]] = field(default_factory=list)  # picker choices carried to later pages

    @property
    def step(self) -> str | None:
        return self.request.form.get("step") if self.trusted else None

    def field(self, name: str) -> str:
        return self.request.form.get(name, "") if self.trusted else ""


class AuthorizationEndpoint:
    def __init__(
        self,
        server: SmartAuthorizationServer,
        sessions: Sessions,
        records: Records,
        engine: Engine,
        action: str,
        secure_cookie: bool,
    ) -> None:
        self.server = server
        self.sessions = sessions
        self.records = records
        self.engine = engine
        self.action = action
        self.secure_cookie = secure_cookie

    def respond(self, request: FormRequest, cookie: str | None) -> Response:
        session = self.sessions.load(cookie)
        trusted = request.method == "POST" and session.check_csrf(request.form.get("csrf_token"))
        visit = Visit(request, session, trusted)
        try:
            response = self._authorize(visit)
        except OAuth2Error as error:
            response = self._refuse(error)
        return keep_session(response, visit.session, self.secure_cookie)

    def _authorize(self, visit: Visit) -> Response:
        visit.grant = self.server.get_consent_grant(visit.request)
        visit.client = visit.grant.request.client
        requested = scopes.split(visit.grant.request.scope)
        launch = self._launch(visit, requested)
        user = self._sign_in(visit, launch)
        if isinstance(user, Response):
            return user
        context = self._context(visit, user, requested, launch)
        if isinstance(context, Response):
            return context
        if visit.step == "consent":
            return self._decide(visit, user, requested, context)
        return self._page(
            "consent.html",
            visit,
            login=user.login,
            requested=[{"text": s, "words": scopes.describe(s)} for s in requested],
            patient_name=self._patient_name(context),
            encounter_label=self._encounter_label(context),
        )

    def _launch(self, visit: Visit, requested: list[str]) -> dict[str, Any]:
        """The EHR launch context (scope ``launch`` with a ``launch`` value); ``launch`` is dropped otherwise."""
        value = visit.request.payload.data.get("launch")
        if "launch" not in requested:
            return {}
        if not value:
            requested.remove("launch")
            return {}
        context = find_launch(self.engine, value)
        if context is None:
            raise self._error(InvalidRequestError, visit, "the launch value is unknown or has expired")
        return context

    def _sign_in(self, visit: Visit, launch: dict[str, Any]) -> User | Response:
        if visit.step == "login":
            user = authenticate(self.engine, visit.field("login"), visit.field("password"))
            if user is None:
                return self._page(
                    "login.html", visit, message="The user name or password is wrong.", login=visit.field("login")
                )
            visit.session = self.sessions.start(user.login, visit.session, awaiting_totp=user.totp_secret is not None)
        elif visit.step == "totp" and visit.session.awaiting_totp and visit.session.login:
            user = find_user(self.engine, visit.session.login)
            if user is None or not user.check_totp(visit.field("totp")):
                return self._page("totp.html", visit, message="That code is not right; enter the one shown now.")
            visit.session = self.sessions.start(user.login, visit.session)
        if visit.session.awaiting_totp:
            return self._page("totp.html", visit)
        found = find_user(self.engine, visit.session.login) if visit.session.logged_in and visit.session.login else None
        if found is None:
            return self._page("login.html", visit)
        wanted = launch.get("fhirUser")
        if wanted and found.fhir_user != wanted:
            return self._page(
                "login.html", visit, message=f"The EHR launched this app for {wanted}: sign in as that user."
            )
        return found

    def _context(
        self, visit: Visit, user: User, requested: list[str], launch: dict[str, Any]
    ) -> dict[str, Any] | Response:
        """Launch context: the EHR's, or the patient (and encounter) picked here for a standalone launch."""
        context = {**launch, "need_patient_banner": bool(launch.get("need_patient_banner", not launch))}
        if "launch/patient" in requested and "patient" not in context:
            chosen = visit.field("patient") if visit.step != "search" else ""
            if user.patient:
                context["patient"] = user.patient
            elif chosen and self.records.patient(chosen) is not None:
                context["patient"] = chosen
                visit.chosen.append(("patient", chosen))
            else:
                name = visit.field("name")
                return self._page("patient_picker.html", visit, name=name, patients=self.records.search_patients(name))
        if "launch/encounter" in requested and "encounter" not in context and "patient" in context:
            chosen = visit.field("encounter")
            if chosen and (chosen == NO_ENCOUNTER or self.records.encounter(chosen, context["patient"])):
                visit.chosen.append(("encounter", chosen))
                if chosen != NO_ENCOUNTER:
                    context["encounter"] = chosen
            elif encounters := self.records.encounters(context["patient"]):
                name = self._patient_name(context)
                return self._page(
                    "encounter_picker.html", visit, encounters=encounters, patient_name=name, no_encounter=NO_ENCOUNTER
                )
        if user.fhir_user:
            context["fhirUser"] = user.fhir_user
        if nonce := visit.request.payload.data.get("nonce"):
            context["nonce"] = nonce
        return context

    def _decide(self, visit: Visit, user: User, requested: list[str], context: dict[str, Any]) -> Response:
        """The consent form's answer: a code for the approved scopes, or ``access_denied``."""
        if visit.field("decision") != "allow":
            raise self._error(AccessDeniedError, visit, "the user denied access")
        approved = [s for s in requested if s in visit.request.form_list("approve")]
        if not {"launch", "launch/patient"} & set(approved):
            context.pop("patient", None)
        if not {"launch", "launch/encounter"} & set(approved):
            context.pop("encounter", None)
        request = visit.grant.request
        request.scope = " ".join(approved)
        request.launch_context = context
        return self.server.handle_response(*visit.grant.create_authorization_response(visit.grant.redirect_uri, user))

    def _page(self, template: str, visit: Visit, **values: Any) -> Response:
        data = visit.request.payload.data
        carried = [(name, data[name]) for name in REQUEST_PARAMETERS if data.get(name)] + visit.chosen
        client_name = visit.client.name if visit.client else "An app"
        return render(
            template,
            action=self.action,
            carried=carried,
            csrf_token=visit.session.csrf_token,
            client_name=client_name,
            **values,
        )

    def _refuse(self, error: OAuth2Error) -> Response:
        if error.redirect_uri:
            return self.server.handle_response(*error())
        return error_page(error.get_error_description() or error.error)

    @staticmethod
    def _error(kind: type[OAuth2Error], visit: Visit, description: str) -> OAuth2Error:
        state = visit.request.payload.state
        return kind(description=description, redirect_uri=visit.grant.redirect_uri, state=state)

    def _patient_name(self, context: dict[str, Any]) -> str:
        found = self.records.patient(context["patient"]) if context.get("patient") else None
        return found.name if found else ""

    def _encounter_label(self, context: dict[str, Any]) -> str:
        found = self.records.encounter(context["encounter"], context["patient"]) if context.get("encounter") else None
        return f"{found.label} {found.start}".strip() if found else ""
