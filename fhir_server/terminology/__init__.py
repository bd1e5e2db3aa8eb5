"""RxNorm terminology: the release store, its loader, and the FHIR terminology operations on it."""
