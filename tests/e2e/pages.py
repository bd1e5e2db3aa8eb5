"""Our authorization pages as a browser without JavaScript sees them: the ``h1`` and the forms, which a test
fills and submits the way a browser would (hidden fields kept, checked boxes sent, the pressed button's
name and value added), over an ``httpx.Client`` that keeps the session cookie.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin

import httpx

TEXT_INPUTS = {"hidden", "text", "search", "password"}


@dataclass
class Input:
    type: str
    name: str
    value: str
    checked: bool


@dataclass
class Form:
    action: str
    method: str
    inputs: list[Input] = field(default_factory=list)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # (name, value, label)

    def names(self) -> set[str]:
        return {i.name for i in self.inputs}

    def data(self, filled: dict[str, str], button: str | None) -> list[tuple[str, str]]:
        """What a browser posts: inputs (``filled`` overriding typed values and choosing radios), then the
        submit button whose label is ``button``."""
        pairs: list[tuple[str, str]] = []
        for item in self.inputs:
            if item.type in TEXT_INPUTS:
                pairs.append((item.name, filled.get(item.name, item.value)))
            elif item.type in ("checkbox", "radio") and (item.checked or filled.get(item.name) == item.value):
                pairs.append((item.name, item.value))
        chosen = [(n, v) for n, v, label in self.buttons if label == button and n]
        return pairs + chosen[:1]


@dataclass
class Page:
    url: str
    heading: str
    forms: list[Form]
    text: str

    def form_with(self, name: str) -> Form:
        """The form that has an input called ``name``."""
        found = [form for form in self.forms if name in form.names()]
        assert len(found) == 1, f"{len(found)} forms with an input {name!r} on {self.heading!r}: {self.text}"
        return found[0]

    def submit(self, browser: httpx.Client, form: Form, button: str | None = None, **filled: str) -> httpx.Response:
        assert form.method == "post"
        body = urlencode(form.data(filled, button))  # repeated names kept, as a browser sends them
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return browser.post(urljoin(self.url, form.action), content=body, headers=headers)


def read_page(response: httpx.Response) -> Page:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    parser = _PageParser()
    parser.feed(response.text)
    return Page(str(response.url), parser.heading.strip(), parser.forms, " ".join(parser.words))


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.heading = ""
        self.forms: list[Form] = []
        self.words: list[str] = []
        self._in: str | None = None
        self._button: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and "name" in a:
            kind = a.get("type", "text").lower()
            self.forms[-1].inputs.append(Input(kind, a["name"], a.get("value", ""), "checked" in a))
        elif tag == "button":
            self._button = (a.get("name", ""), a.get("value", ""))
            self._in = "button"
        elif tag == "h1":
            self._in = "h1"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "button"):
            self._in = None
            self._button = None

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.words.append(data.strip())
        if self._in == "h1":
            self.heading += data
        elif self._in == "button" and self._button is not None and self.forms:
            self.forms[-1].buttons.append((*self._button, data.strip()))
