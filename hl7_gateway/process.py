"""One inbound HL7 v2 message: store it raw, then decode, parse, map, apply through the FHIR transaction
path, and acknowledge.

Original mode (MSH-15 and MSH-16 empty): one ACK, ``AA`` only after the transaction Bundle the mapper
produced has been committed by the Repository (the same code a client's ``POST /fhir`` transaction
runs), together with the message's status, in one database transaction; ``AE`` when mapping or FHIR
validation/storage refuses it; ``AR`` when it cannot be read or its type is not supported.

Enhanced mode (MSH-15 or MSH-16 valued, HL7 v2.5 section 2.9.3): the accept acknowledgement ``CA`` as
soon as the raw message is committed to the store (``CE`` if it could not be), as MSH-15 asks; then,
after processing, the application acknowledgement (AA/AE/AR) as MSH-16 asks (AL always, ER only on
error, SU only on success, NE never), sent back on the same connection. An empty MSH-15/16 in enhanced
mode counts as AL; MSH-15 and MSH-16 both NE get the original-mode ACK (an MLLP sender waits for one).

A resend of a stored sender + MSH-10 is a duplicate: it gets the stored ACK(s) again and changes
nothing. If the original was stored but never finished (the listener died while processing it), the
resend processes it; a run that finds the message finished by another run meanwhile rolls back.

Exceptions: ``MessageStore`` raises ``AlreadyFinished`` internally; every other error ends in an ACK.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.exc import DBAPIError

from fhir_server.api.request import Context, FhirRequest
from fhir_server.api.router import dispatch
from fhir_server.errors import FhirError
from fhir_server.storage.repository import WriteUnit, is_collision
from hl7_gateway.ack import (
    APPLICATION_ERROR,
    DATA_TYPE_ERROR,
    SEGMENT_SEQUENCE_ERROR,
    UNSUPPORTED_MESSAGE_TYPE,
    Problem,
    acknowledgement,
)
from hl7_gateway.batch import Batch, batch_acknowledgement, is_batch, split_batch
from hl7_gateway.store import (
    ERROR,
    PROCESSED,
    RECEIVED,
    REJECTED,
    AlreadyFinished,
    Arrival,
    Header,
    MessageStore,
    Outcome,
)
from hl7_gateway.store import StoredMessage as StoredMessage
from mappers.errors import MappingError, UnsupportedMessage, V2Error
from mappers.messages import map_message
from mappers.v2 import Message, decode, first_line, header_delimiters, parse

log = logging.getLogger("hl7_gateway")

REPROCESSABLE = (RECEIVED, ERROR, REJECTED)
GROUP = 64  # messages of a batch file stored and applied per transaction


@dataclass(frozen=True)
class AckTypes:
    """MSH-15 (accept) and MSH-16 (application) acknowledgement types, table 0155; both empty: original mode."""

    accept: str = ""
    application: str = ""

    @property
    def enhanced(self) -> bool:
        """Both empty: original mode. Both NE asks for no answer at all, which would leave an MLLP sender
        waiting (and break "every message gets an answer"): such messages get the original-mode ACK."""
        return bool(self.accept or self.application) and (self.accept, self.application) != ("NE", "NE")

    def accept_wanted(self, code: str) -> bool:
        return _wanted(self.accept, code)

    def application_wanted(self, code: str) -> bool:
        return not self.enhanced or _wanted(self.application, code)


def _wanted(ack_type: str, code: str) -> bool:
    success = code in ("AA", "CA")
    return {"NE": False, "ER": not success, "SU": success}.get(ack_type, True)


@dataclass
class Receipt:
    """A message as stored: what to answer at once and whether it still has to be processed."""

    message: StoredMessage
    ack_types: AckTypes
    replies: list[str] = field(default_factory=list)
    pending: bool = False


def read_header(raw: bytes) -> tuple[Header, AckTypes]:
    """Sender, MSH-10, type, version and acknowledgement types from the raw MSH line (empty when unreadable)."""
    head = first_line(raw)
    try:
        delimiters = header_delimiters(head, 1) if head.startswith("MSH") else None
    except V2Error:
        delimiters = None
    if delimiters is None:
        return Header(), AckTypes()
    fields = head.split(delimiters.field)
    fields += [""] * (17 - len(fields))
    header = Header(
        sending_application=fields[2],
        sending_facility=fields[3],
        control_id=fields[9] or None,
        message_type=fields[8],
        version=fields[11].split(delimiters.component, 1)[0],
    )
    return header, AckTypes(fields[14].strip().upper(), fields[15].strip().upper())


@dataclass(frozen=True)
class Prepared:
    """A message that parsed and mapped: ready to apply."""

    message: Message
    bundle: dict[str, Any]


class Gateway:
    """Stores, processes and reprocesses messages for one FHIR context (repository + settings).

    Messages go through in groups (group commit): ``receive_all`` stores a group's raw messages in one
    transaction, ``apply_all`` applies a group in one transaction, each message under a savepoint so that one
    refused message (AE) never undoes the others. A single message is a group of one.
    """

    def __init__(self, ctx: Context, fallback_charset: str = "latin-1") -> None:
        self.ctx = ctx
        self.store = MessageStore(ctx.repository)
        self.fallback_charset = fallback_charset

    # -- the listener's two steps ------------------------------------------------------------------
    def receive_all(self, arrivals: Sequence[tuple[bytes, str]]) -> list[Receipt]:
        """Store the raw messages (committed before this returns) and say what to answer now to each."""
        headers = [read_header(raw) for raw, _peer in arrivals]
        listed = [
            Arrival(
                raw, peer, header, acknowledgement(None, "CA", raw_head=first_line(raw)) if types.enhanced else None
            )
            for (raw, peer), (header, types) in zip(arrivals, headers, strict=True)
        ]
        try:
            stored = self.store.receive_many(listed)
        except Exception:
            if len(listed) > 1:  # one message may spoil a group (a value the database refuses): store one by one
                log.warning("storing a group of %d messages failed; storing them one at a time", len(listed))
                return [receipt for arrival in arrivals for receipt in self.receive_all([arrival])]
            log.exception("could not store an inbound HL7 v2 message")
            return [self.not_stored(listed[0].raw)]
        return [
            self._receipt(message, new, types) for (message, new), (_header, types) in zip(stored, headers, strict=True)
        ]

    def _receipt(self, stored: StoredMessage, new: bool, ack_types: AckTypes) -> Receipt:
        receipt = Receipt(stored, ack_types)
        if ack_types.enhanced and stored.accept_ack and ack_types.accept_wanted("CA"):
            receipt.replies.append(stored.accept_ack)
        control_id = stored.header.control_id
        if new or stored.status == RECEIVED:
            receipt.pending = True
            if not new:
                log.info("resend of unfinished message %s (id %s): processing it", control_id, stored.id)
        else:
            log.info("duplicate of message %s (id %s): answering its ACK again", control_id, stored.id)
            if stored.ack is not None and ack_types.application_wanted(stored.ack_code or ""):
                receipt.replies.append(stored.ack)
        return receipt

    def complete_all(self, receipts: Sequence[Receipt]) -> list[str | None]:
        """Process received messages together; each one's application (or original-mode) ACK, None if unwanted."""
        outcomes = self.apply_all([r.message for r in receipts], (RECEIVED,))
        return [
            outcome.ack if receipt.ack_types.application_wanted(outcome.code) else None
            for receipt, outcome in zip(receipts, outcomes, strict=True)
        ]

    def handle(self, raw: bytes, peer: str) -> list[str]:
        """Every answer to ``raw`` (a message or a batch), in order, without a network in between."""
        if is_batch(raw):
            return [self.batch(raw, peer)]
        (receipt,) = self.receive_all([(raw, peer)])
        answers = self.complete_all([receipt]) if receipt.pending else []
        return receipt.replies + [answer for answer in answers if answer is not None]

    def batch(self, raw: bytes, peer: str) -> str:
        """A batch (FHS/BHS ... BTS/FTS): its messages stored, then processed, ``GROUP`` at a time; one batch ACK."""
        batch: Batch = split_batch(raw)
        acks = []
        for start in range(0, len(batch.messages), GROUP):
            receipts = self.receive_all([(message, peer) for message in batch.messages[start : start + GROUP]])
            pending = [r for r in receipts if r.pending]
            outcomes = iter(self.apply_all([r.message for r in pending], (RECEIVED,)))
            for receipt in receipts:
                if receipt.pending:
                    acks.append(next(outcomes).ack)
                else:  # a duplicate (its stored ACK) or a message the store refused (the AE said so)
                    acks.append(receipt.message.ack or receipt.replies[-1])
        return batch_acknowledgement(batch, acks)

    # -- processing ----------------------------------------------------------------------------------
    def reprocess(self, message_id: int) -> Outcome | None:
        """Run a stored message again (after a mapping fix); None if there is no such message."""
        stored = self.store.get(message_id)
        if stored is None:
            return None
        if stored.status not in REPROCESSABLE:
            return Outcome(stored.ack_code or "", stored.ack or "", f"not reprocessed: it is {stored.status}")
        return self.apply_all([stored], (stored.status,))[0]

    def apply_all(self, messages: Sequence[StoredMessage], expected: Sequence[str]) -> list[Outcome]:
        """Decode, parse, map and apply ``messages`` in one transaction, each outcome recorded with it.

        A message another run finished meanwhile (its row left ``expected``) keeps that run's outcome. If the
        transaction itself fails (the database is unreachable), each gets an AE and stays ``received``, so a
        resend processes it.
        """
        if not messages:
            return []
        prepared = [self.prepare(m.raw) for m in messages]
        attempts = 0

        def work(unit: WriteUnit) -> list[Outcome | None]:
            nonlocal attempts
            attempts += 1
            return [
                self._apply(unit, message.id, ready, expected, remap=attempts > 1)
                for message, ready in zip(messages, prepared, strict=True)
            ]

        try:
            outcomes = self.ctx.repository.write(work)
        except Exception as error:
            if len(messages) > 1:  # retries ran out or one message spoils the group: apply them one by one
                log.warning(
                    "applying a group of %d messages failed (%s); applying them one at a time", len(messages), error
                )
                return [outcome for message in messages for outcome in self.apply_all([message], expected)]
            log.exception("could not apply HL7 v2 message %s", messages[0].id)
            return [_unrecorded(ready, error) for ready in prepared]
        return [self._finished(m.id) if o is None else o for m, o in zip(messages, outcomes, strict=True)]

    def _apply(
        self, unit: WriteUnit, message_id: int, ready: Prepared | Outcome, expected: Sequence[str], remap: bool
    ) -> Outcome | None:
        """One message in the group's transaction: its bundle applied under a savepoint and its outcome
        recorded; None when another run finished it first."""
        if isinstance(ready, Outcome):  # refused before any write (AR/AE): only its outcome is recorded
            outcome = ready
        else:
            try:
                with unit.savepoint():
                    return self._applied(unit, message_id, ready, expected, remap)
            except AlreadyFinished:
                return None
            except DBAPIError as error:
                if is_collision(error):
                    raise  # the whole group runs again
                outcome = self._failed(ready.message, error)
            except FhirError as error:
                log.info("message %s refused by FHIR validation or storage: %s", message_id, error.diagnostics)
                outcome = self._outcome(ready.message, "AE", Problem(APPLICATION_ERROR, error.diagnostics))
            except Exception as error:
                outcome = self._failed(ready.message, error)
        try:
            self.store.finish(unit, message_id, outcome, expected)
        except AlreadyFinished:
            return None
        return outcome

    def _applied(
        self, unit: WriteUnit, message_id: int, ready: Prepared, expected: Sequence[str], remap: bool
    ) -> Outcome:
        """The bundle applied through the FHIR transaction path and the message finished with AA."""
        bundle = map_message(ready.message) if remap else ready.bundle  # a retried group starts fresh
        request = FhirRequest("POST", "", headers={"prefer": "return=minimal"}, body=bundle)
        dispatch(replace(self.ctx, unit=unit), request)
        outcome = Outcome("AA", acknowledgement(ready.message, "AA"))
        self.store.finish(unit, message_id, outcome, expected)
        return outcome

    def _failed(self, message: Message, error: Exception) -> Outcome:
        log.error("unexpected error processing HL7 v2 message %s", message.msh.raw(10), exc_info=error)
        problem = Problem(APPLICATION_ERROR, "the message could not be processed; the error has been logged")
        return replace(self._outcome(message, "AE", problem), error=f"{type(error).__name__}: {error}")

    def prepare(self, raw: bytes) -> Prepared | Outcome:
        """Decode, parse and map; the outcome (AR/AE with ERR) when any of these refuses the message."""
        try:
            text = decode(raw, self.fallback_charset)
            message = parse(text)
        except V2Error as error:
            return _refused(None, "AR", _problem(error, SEGMENT_SEQUENCE_ERROR), first_line(raw))
        except Exception as error:  # a reader bug: the message is refused, not the group it came with
            log.exception("could not read an HL7 v2 message")
            problem = Problem(APPLICATION_ERROR, f"the message could not be read: {type(error).__name__}")
            return _refused(None, "AR", problem, first_line(raw))
        try:
            return Prepared(message, map_message(message))
        except UnsupportedMessage as error:
            return self._outcome(message, "AR", _problem(error, UNSUPPORTED_MESSAGE_TYPE))
        except MappingError as error:
            return self._outcome(message, "AE", _problem(error, DATA_TYPE_ERROR))
        except Exception as error:
            log.exception("mapper failed on message %s", message.msh.raw(10))
            problem = Problem(APPLICATION_ERROR, f"the message could not be mapped: {type(error).__name__}")
            return replace(self._outcome(message, "AE", problem), error=f"{type(error).__name__}: {error}")

    def _outcome(self, message: Message, code: str, problem: Problem) -> Outcome:
        return Outcome(code, acknowledgement(message, code, problem), problem.text)

    def _finished(self, message_id: int) -> Outcome:
        """The outcome another run recorded for ``message_id``."""
        stored = self.store.get(message_id)
        assert stored is not None and stored.ack is not None
        return Outcome(stored.ack_code or "", stored.ack, stored.error)

    def not_stored(self, raw: bytes) -> Receipt:
        """The answer when the store is unreachable: CE (enhanced) or AE (original); nothing processed."""
        header, ack_types = read_header(raw)
        problem = Problem(APPLICATION_ERROR, "the message could not be stored; send it again later")
        code = "CE" if ack_types.enhanced else "AE"
        stub = StoredMessage(0, None, "", header, raw, RECEIVED, None, None, None, None, 0)  # type: ignore[arg-type]
        receipt = Receipt(stub, ack_types)
        if not ack_types.enhanced or ack_types.accept_wanted(code):
            receipt.replies.append(acknowledgement(None, code, problem, raw_head=first_line(raw)))
        return receipt


# Nothing of the message was committed: the sender should send it again.
RESEND = Problem(APPLICATION_ERROR, "the message could not be processed; send it again later")


def not_processed(raw: bytes) -> str:
    """The AE for a message whose processing was interrupted before anything of it was committed."""
    return acknowledgement(None, "AE", RESEND, raw_head=first_line(raw))


def _unrecorded(ready: Prepared | Outcome, error: Exception) -> Outcome:
    """The answer for a message whose group transaction failed: its own AR/AE if it had one, else an AE."""
    if isinstance(ready, Outcome):
        return ready
    return Outcome("AE", acknowledgement(ready.message, "AE", RESEND), f"{type(error).__name__}: {error}")


def _refused(message: Message | None, code: str, problem: Problem, head: str) -> Outcome:
    return Outcome(code, acknowledgement(message, code, problem, raw_head=head), problem.text)


def _problem(error: V2Error, code: tuple[str, str]) -> Problem:
    return Problem(code, str(error), error.segment, error.field)


def too_large(head: bytes, limit: int) -> str:
    """The AR for a frame over the size limit (answered from its first line; the frame is not stored)."""
    problem = Problem(APPLICATION_ERROR, f"message larger than the {limit} bytes this listener accepts")
    return acknowledgement(None, "AR", problem, raw_head=first_line(head))


__all__ = ["PROCESSED", "AckTypes", "Gateway", "Receipt", "not_processed", "read_header", "too_large"]
