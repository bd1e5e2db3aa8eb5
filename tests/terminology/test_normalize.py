"""NDC forms and name words."""

from __future__ import annotations

import pytest

from fhir_server.errors import BadRequest
from fhir_server.terminology.normalize import name_words, ndc11_candidates


@pytest.mark.parametrize(
    ("ndc", "forms"),
    [
        ("0904-1982-61", ["00904198261"]),  # 4-4-2
        ("50580-496-60", ["50580049660"]),  # 5-3-2
        ("50580-0496-6", ["50580049606"]),  # 5-4-1
        ("50580-0496-60", ["50580049660"]),  # 5-4-2
        ("00904198261", ["00904198261"]),
        ("0904198261", ["00904198261", "09041098261", "09041982601"]),  # bare 10 digits: each layout
    ],
)
def test_ndc11_candidates(ndc: str, forms: list[str]) -> None:
    assert ndc11_candidates(ndc) == forms


@pytest.mark.parametrize("ndc", ["", "123", "0904-1982", "0904-19a2-61", "123456789012", "1-2-3"])
def test_not_an_ndc(ndc: str) -> None:
    with pytest.raises(BadRequest) as raised:
        ndc11_candidates(ndc)
    assert raised.value.issues[0].expression == ["code"]


def test_name_words() -> None:
    assert name_words("Amoxicillin 500 MG / Clavulanate 0.125 MG [Augmentin]") == [
        "amoxicillin",
        "500",
        "mg",
        "clavulanate",
        "0.125",
        "augmentin",
    ]
