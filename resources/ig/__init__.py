"""SearchParameters of implementation guides, merged into the registry beside the core R4 ones.

Each ``*.json`` here is a collection Bundle of SearchParameter resources written by this project from an
IG's published definitions (canonical url, version, code, base, type, expression, comparators, targets;
the descriptions are ours). ``resources/generate_registry.py`` reads every one of them after the official
``search-parameters.json``; a parameter whose code a resource type already has fails the generation.

- ``carin-bb-search-parameters.json``: CARIN Blue Button (C4BB) STU 2.1, version 2.1.0 of
  http://hl7.org/fhir/us/carin-bb (its "Search Parameters" page): the ExplanationOfBenefit parameters R4
  lacks (``billable-period-start``, ``insurer``, ``service-date``, ``service-start-date``, ``type``). The
  guide's other SearchParameters (EOB ``patient``, ``identifier``, ``care-team``, ``coverage``,
  ``provider``; Coverage ``payor``; PractitionerRole ``organization``, ``practitioner``) are derived
  from the R4 ones with the same expression and targets, so the core definitions serve them.
"""

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def search_parameter_bundles() -> list[Path]:
    """The IG SearchParameter Bundles of this folder, in name order (the order the registry merges them)."""
    return sorted(FOLDER.glob("*.json"))
