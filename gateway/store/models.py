"""Database tables. Times are stored in UTC and always come back timezone-aware."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column
from sqlalchemy.types import TypeDecorator

# BigInteger primary keys that are still SQLite's ROWID aliases.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as naive UTC (SQLite keeps no offsets)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the store needs aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class ReferenceCounter(Base):
    """The last sequence number handed out per prefix and year."""

    __tablename__ = "reference_counters"
    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class Organisation(Base):
    """A customer organisation and its one contract."""

    __tablename__ = "organisations"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)  # customer number
    name: Mapped[str] = mapped_column(String(255))
    contract: Mapped[str] = mapped_column(String(16))  # none | sla | sla_24x7
    billing: Mapped[str] = mapped_column(String(16))  # invoice | sla_settlement
    included_minutes: Mapped[int] = mapped_column(Integer, default=0)  # per month
    submission_fee_cents: Mapped[int] = mapped_column(Integer, default=0)  # per ticket
    # SLA targets overriding the [sla] defaults: JSON {"1": [first_response_h,
    # resolution_h], ...}; None: the defaults of the contract.
    sla_targets: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OrganisationDomain(Base):
    """A mail domain of an organisation: unknown addresses there belong to it."""

    __tablename__ = "organisation_domains"
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)


class Contact(Base):
    """A person who mails the desk; with an organisation, or on their own (no contract)."""

    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    language: Mapped[str] = mapped_column(String(8))  # nl | en
    created_at: Mapped[datetime]


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    subject: Mapped[str] = mapped_column(String(998))
    status: Mapped[str] = mapped_column(String(32), index=True)
    category: Mapped[str | None] = mapped_column(String(32))
    impact: Mapped[str | None] = mapped_column(String(16))
    urgency: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[int | None] = mapped_column(Integer)
    priority_overridden: Mapped[bool] = mapped_column(Boolean, default=False)
    team: Mapped[str] = mapped_column(String(32), index=True)
    requester: Mapped[str] = mapped_column(String(320), index=True)
    language: Mapped[str] = mapped_column(String(8))
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    scheduled_for: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    article_count: Mapped[int] = mapped_column(Integer, default=0)
    # The SLA clock (domain/sla.py): stopped since, and clock seconds stopped before.
    sla_stopped_at: Mapped[datetime | None]
    sla_stopped_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_response_at: Mapped[datetime | None]  # the first public answer of an agent
    first_response_due: Mapped[datetime | None] = mapped_column(index=True)
    resolution_due: Mapped[datetime | None] = mapped_column(index=True)


class Timer(Base):
    """Something to do about a ticket at a moment: fires once, in its own transaction.

    `episode` tells apart the runs of a timer: "sla" for the SLA warnings (once per
    ticket), the moment the status was entered for reminders and wake-ups (once per
    time the ticket enters that status). Re-arming moves an unfired timer; a fired one
    stays fired.
    """

    __tablename__ = "timers"
    __table_args__ = (
        UniqueConstraint("ticket_id", "kind", "episode"),
        Index(
            "ix_timers_due",
            "due_at",
            postgresql_where=text("fired_at IS NULL"),
            sqlite_where=text("fired_at IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    episode: Mapped[str] = mapped_column(String(40))
    due_at: Mapped[datetime]
    fired_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(255))  # what firing did


class TimeEntry(Base):
    """Time spent on a ticket, for billing: warranty and SLA time are not charged."""

    __tablename__ = "time_entries"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    minutes: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # warranty | sla | billable
    work_date: Mapped[date] = mapped_column(Date, index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime]


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "address"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    address: Mapped[str] = mapped_column(String(320))


class Article(Base):
    __tablename__ = "articles"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    author: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16))  # customer | agent | system
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    subject: Mapped[str] = mapped_column(String(998))
    body: Mapped[str] = mapped_column(Text)  # what is shown: the new part of a reply
    full_body: Mapped[str | None] = mapped_column(Text)  # the whole text, when different
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    created_at: Mapped[datetime]
    # SPF/DKIM/DMARC from a trusted Authentication-Results header, as JSON; None: none.
    auth: Mapped[str | None] = mapped_column(Text)


class HistoryEntry(Base):
    __tablename__ = "history"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime]
    field: Mapped[str] = mapped_column(String(32))
    old: Mapped[str | None] = mapped_column(String(998))
    new: Mapped[str | None] = mapped_column(String(998))
    by: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str | None] = mapped_column(Text)


class InboundMessage(Base):
    """Every message taken in, with its raw bytes and what became of it."""

    __tablename__ = "inbound_messages"
    # One message per Message-ID, except the recorded copies of one (outcome duplicate):
    # two daemons taking in the same mail at once cannot both make a ticket.
    __table_args__ = (
        Index(
            "uq_inbound_messages_message_id",
            "message_id",
            unique=True,
            postgresql_where=text("outcome <> 'duplicate'"),
            sqlite_where=text("outcome <> 'duplicate'"),
        ),
    )
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    source: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))  # ticket | article | ignored | duplicate
    reason: Mapped[str | None] = mapped_column(String(128))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    raw: Mapped[bytes] = deferred(mapped_column(LargeBinary))


class QuarantinedMessage(Base):
    """A message that failed at some stage, kept whole so it can be reprocessed."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(128))
    stage: Mapped[str] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="held")  # held|reprocessed|discarded
    created_at: Mapped[datetime]
    size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # whole message
    truncated: Mapped[bool] = mapped_column(  # raw holds the head only
        Boolean, default=False, server_default=false()
    )
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # failures
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(255))  # what reprocess made of it
    raw: Mapped[bytes] = deferred(mapped_column(LargeBinary))


class MailboxUid(Base):
    """The UID ledger: every IMAP message taken in, per mailbox and UIDVALIDITY.

    A row is written in the message's own transaction; `acked` is set once the
    message is flagged \\Seen (or moved) on the server. The highest UID is the cursor;
    rows not yet acked after a crash are acknowledged at the next connect.
    """

    __tablename__ = "mailbox_uids"
    __table_args__ = (
        Index(
            "ix_mailbox_uids_unacked",
            "mailbox",
            "uidvalidity",
            postgresql_where=text("NOT acked"),
            sqlite_where=text("NOT acked"),
        ),
    )
    mailbox: Mapped[str] = mapped_column(String(64), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    uid: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16))
    acked: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime]


class Attachment(Base):
    """An attachment of an incoming mail; its content lives once per SHA-256 in blobs."""

    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    disposition: Mapped[str] = mapped_column(String(16))  # attachment | inline
    content_id: Mapped[str | None] = mapped_column(String(998))
    is_message: Mapped[bool] = mapped_column(Boolean, default=False)  # forwarded mail
    sha256: Mapped[str] = mapped_column(String(64))
    # None: the content is in attachment_blobs; else why it was not kept (over a limit).
    refused: Mapped[str | None] = mapped_column(String(255))


class AttachmentBlob(Base):
    """Attachment content, stored once however often it is sent."""

    __tablename__ = "attachment_blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))


class Bounce(Base):
    """A delivery failure report about one of our notifications, per recipient."""

    __tablename__ = "bounces"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"), index=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), index=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(320), index=True)
    status: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    permanent: Mapped[bool] = mapped_column(Boolean)
    diagnostic: Mapped[str] = mapped_column(String(500))
    at: Mapped[datetime]


class DeskSecret(Base):
    """Secrets the daemons share, made once (the Message-ID key when none is configured)."""

    __tablename__ = "desk_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]


# A notification's states (see OutboxMessage.state); the relay still acts on the first
# three. OUTBOX_WAITING says so in SQL, word for word as the partial index has it.
OUTBOX_STATES = ("pending", "claimed", "sending", "sent", "failed", "unknown", "suppressed")
OUTBOX_WAITING_STATES = OUTBOX_STATES[:3]
OUTBOX_WAITING = "state IN (" + ", ".join(f"'{s}'" for s in OUTBOX_WAITING_STATES) + ")"


class OutboxMessage(Base):
    """A notification decided in a ticket transaction, sent later by the relay."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "state", "next_attempt_at"),
        Index("ix_outbox_recipient_created", "recipient", "created_at"),
        # The few rows the relay still acts on, among all ever sent. Queries name the
        # condition word for word (OUTBOX_WAITING): SQLite uses a partial index only so.
        Index(
            "ix_outbox_waiting",
            "next_attempt_at",
            postgresql_where=text(OUTBOX_WAITING),
            sqlite_where=text(OUTBOX_WAITING),
        ),
    )
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    recipient: Mapped[str] = mapped_column(String(320))
    reply_to: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)  # space-separated Message-IDs
    auto_submitted: Mapped[str] = mapped_column(String(32))
    # pending -> claimed (a relay took it, lease in next_attempt_at) -> sending (the
    # SMTP DATA is under way) -> sent | pending (retry) | failed; a `sending` row whose
    # relay died becomes `unknown`: it may have been delivered and is not resent.
    # `suppressed`: never sent (a rate limit, or the sender asked for no automatic
    # answers); last_error says why.
    state: Mapped[str] = mapped_column(String(16))
    claim_token: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
