"""Code generated from the FHIR specification by the resources/generate_*.py scripts."""
