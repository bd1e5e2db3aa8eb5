"""Server-rendered pages of the authorization flow (Jinja2 templates in ``smart_auth/templates``):
plain accessible HTML forms that work without JavaScript, never cached, never framed.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

from smart_auth.sessions import COOKIE, Session

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_templates = Environment(loader=PackageLoader("smart_auth", "templates"), autoescape=select_autoescape(["html"]))


def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page from ``template`` with ``values``."""
    html = _templates.get_template(template).render(**values)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def error_page(message: str, status: int = 400) -> HTMLResponse:
    return render("error.html", status, message=message)


def keep_session(response: Any, session: Session, secure: bool) -> Any:
    """Set the session cookie on ``response`` (HttpOnly, SameSite=Lax, only sent to ``/auth``)."""
    response.set_cookie(COOKIE, session.value, path="/auth", httponly=True, samesite="lax", secure=secure)
    return response
