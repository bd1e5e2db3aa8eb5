"""RxNorm tables: one loaded release, global to every partition (terminology is not tenant data).

Columns follow the RRF files of the release (https://www.nlm.nih.gov/research/umls/rxnorm/docs/techdoc.html).
``rxnorm_display`` holds one preferred name per RxCUI and ``rxnorm_word`` its normalised name tokens,
both derived at load time for ``$lookup`` and ``ValueSet/$expand?filter=``.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, String, Table, Text

from fhir_server.storage.schema import metadata

RXCUI = String(16)
# Byte-order collation on PostgreSQL, so that a prefix is an index range whatever the database's locale.
WORD = String(64).with_variant(String(64, collation="C"), "postgresql")

rxnorm_release = Table(
    "rxnorm_release",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("loaded_at", DateTime, nullable=False),
    Column("licensed_sources", Boolean, nullable=False),
)

# RXNCONSO.RRF: one row per atom (a name of a concept in one source, with its term type).
rxnorm_concept = Table(
    "rxnorm_concept",
    metadata,
    Column("rxcui", RXCUI, nullable=False),
    Column("rxaui", String(16), nullable=False),
    Column("sab", String(40), nullable=False),
    Column("tty", String(20), nullable=False),
    Column("code", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("suppress", String(1), nullable=False),
    Index(None, "rxcui"),
)

# The preferred name of each concept, and whether it is suppressed (derived from rxnorm_concept).
rxnorm_display = Table(
    "rxnorm_display",
    metadata,
    Column("rxcui", RXCUI, primary_key=True),
    Column("name", Text, nullable=False),
    Column("tty", String(20), nullable=False),
    Column("suppress", String(1), nullable=False),
)

# Lower-cased alphanumeric words of every name of a concept, for word-order-insensitive prefix search.
rxnorm_word = Table(
    "rxnorm_word",
    metadata,
    Column("word", WORD, nullable=False),
    Column("rxcui", RXCUI, nullable=False),
    Index(None, "word", "rxcui"),
    Index(None, "rxcui", "word"),
)

# RXNREL.RRF: read "rxcui2 <rela> rxcui1" (the relation of the second concept to the first).
rxnorm_relation = Table(
    "rxnorm_relation",
    metadata,
    Column("rxcui1", RXCUI, nullable=False),
    Column("rela", String(64), nullable=False),
    Column("rxcui2", RXCUI, nullable=False),
    Column("sab", String(40), nullable=False),
    Index(None, "rxcui2", "rela"),
)

# RXNSAT.RRF rows with ATN='NDC': the normalised 11-digit NDC of a concept.
rxnorm_ndc = Table(
    "rxnorm_ndc",
    metadata,
    Column("ndc", String(11), nullable=False),
    Column("rxcui", RXCUI, nullable=False),
    Column("sab", String(40), nullable=False),
    Index(None, "ndc"),
    Index(None, "rxcui"),
)

# RXNCUI.RRF: what a retired RxCUI became (rxcui_to empty when it was retired without a replacement).
rxnorm_history = Table(
    "rxnorm_history",
    metadata,
    Column("rxcui", RXCUI, nullable=False),
    Column("ver_start", String(40), nullable=False),
    Column("ver_end", String(40), nullable=False),
    Column("cardinality", Integer, nullable=False),
    Column("rxcui_to", RXCUI, nullable=False),
    Index(None, "rxcui"),
)

# RXNSTY.RRF: the semantic types of a concept.
rxnorm_semantic_type = Table(
    "rxnorm_semantic_type",
    metadata,
    Column("rxcui", RXCUI, nullable=False),
    Column("tui", String(8), nullable=False),
    Column("sty", String(128), nullable=False),
    Index(None, "rxcui"),
)

RELEASE_TABLES = (
    rxnorm_word,
    rxnorm_display,
    rxnorm_concept,
    rxnorm_relation,
    rxnorm_ndc,
    rxnorm_history,
    rxnorm_semantic_type,
    rxnorm_release,
)
