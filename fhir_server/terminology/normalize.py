"""Normal forms shared by the loader and the operations: name words for search, NDCs as 11 digits.

NDC forms: https://www.fda.gov/drugs/drug-approvals-and-databases/national-drug-code-directory
(labeler-product-package as 4-4-2, 5-3-2 or 5-4-1; the 11-digit HIPAA form pads each to 5-4-2).
"""

from __future__ import annotations

import re

from fhir_server.errors import BadRequest

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
IMPLICIT_VALUE_SET = f"{RXNORM}?fhir_vs"  # all of RxNorm
NDC = "http://hl7.org/fhir/sid/ndc"

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_SEGMENTS = (5, 4, 2)
_TEN_DIGIT_LAYOUTS = ((4, 4, 2), (5, 3, 2), (5, 4, 1))
MAX_WORD = 64


def name_words(text: str) -> list[str]:
    """The lower-cased words of a drug name or filter (``0.5`` stays one word), in order, without repeats."""
    return list(dict.fromkeys(w[:MAX_WORD] for w in _WORD.findall(text.lower())))


def ndc11_candidates(code: str) -> list[str]:
    """The 11-digit forms an NDC may stand for: one when hyphenated or 11 digits, up to three for 10 bare digits."""
    value = code.strip()
    if re.fullmatch(r"\d{1,5}-\d{1,4}-\d{1,2}", value) and len(value) - 2 in (10, 11):
        return ["".join(part.zfill(width) for part, width in zip(value.split("-"), _SEGMENTS, strict=True))]
    if re.fullmatch(r"\d{11}", value):
        return [value]
    if re.fullmatch(r"\d{10}", value):
        return [_pad_ten(value, layout) for layout in _TEN_DIGIT_LAYOUTS]
    raise BadRequest(f"'{code}' is not an NDC (10 or 11 digits, with or without hyphens)", expression="code")


def _pad_ten(digits: str, layout: tuple[int, int, int]) -> str:
    """``digits`` read as labeler/product/package of the widths in ``layout``, padded to 5-4-2."""
    labeler, product = digits[: layout[0]], digits[layout[0] : layout[0] + layout[1]]
    package = digits[layout[0] + layout[1] :]
    return labeler.zfill(5) + product.zfill(4) + package.zfill(2)
