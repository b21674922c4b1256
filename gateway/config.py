"""Configuration: a TOML file validated by pydantic, one clear line per problem.

Settings are loaded once and passed in; nothing reaches for a global config.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.domain.calendar import BusinessCalendar, OfficeHours
from gateway.domain.oncall import DEFAULT_URGENT_WORDS
from gateway.domain.sla import SlaRules

CONFIG_ENV = "TICKET_GATEWAY_CONFIG"
DEFAULT_CONFIG_PATH = Path("config/demo.toml")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one line per problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Address = Annotated[str, Field(min_length=3, pattern=r"^[^@\s<>]+@[^@\s<>]+$")]


def _lower(value: str) -> str:
    return value.strip().lower()


class DeskSettings(_Section):
    reference_prefix: str = Field(default="VTM", pattern=r"^[A-Za-z][A-Za-z0-9]{0,11}$")
    sender: Address = "servicedesk@vtm.example"
    sender_name: str = "VTM Servicedesk"
    language: Literal["nl", "en"] = "nl"
    reopen_days: int = Field(default=14, ge=0, le=3650)
    templates_dir: str = ""  # empty: the templates/ folder shipped with the gateway

    _normalise_sender = field_validator("sender")(_lower)

    @property
    def templates_path(self) -> Path:
        return Path(self.templates_dir) if self.templates_dir else PACKAGE_ROOT / "templates"


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///var/gateway.db"
    auto_migrate: bool = False  # run pending migrations when the daemon starts

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                f"(got {value.split('://', 1)[0]!r})"
            )
        return value


class TeamSettings(_Section):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: str = Field(min_length=1)
    address: Address
    phone: str = ""
    default: bool = False
    # The category of a new ticket when the customer names none in the subject or first
    # line ("Incident:", "Wijziging:", "Vraag:"); agents can always change it.
    default_category: Literal["", "incident", "service_request", "change"] = ""
    # Where team notices (a customer replied, a ticket reopened) go. Never a desk
    # address the gateway reads itself: that would feed it its own mail.
    notify: list[Address] = []

    _normalise_address = field_validator("address")(_lower)

    @field_validator("notify")
    @classmethod
    def _normalise_notify(cls, value: list[str]) -> list[str]:
        return [_lower(v) for v in value]


Security = Literal["none", "starttls", "tls"]


class _Credentials(_Section):
    username: str = ""
    password: str = ""
    password_file: str = ""

    def secret(self) -> str:
        """The password, read from password_file when one is named."""
        if self.password_file:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        return self.password

    @model_validator(mode="after")
    def _readable_password_file(self) -> _Credentials:
        if self.password and self.password_file:
            raise ValueError("set password or password_file, not both")
        if self.password_file and not os.access(self.password_file, os.R_OK):
            raise ValueError(f"password_file {self.password_file!r} is not readable")
        return self


class MailboxSettings(_Credentials):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    host: str = "127.0.0.1"
    port: int = Field(default=993, ge=1, le=65535)
    security: Security = "tls"
    folder: str = "INBOX"
    poll_seconds: float = Field(default=60, gt=0)
    fetch_batch: int = Field(default=100, ge=1, le=1000)  # UIDs per FETCH command
    timeout_seconds: float = Field(default=30, gt=0)
    # Wait for new mail with IMAP IDLE when the server offers it (else poll), and
    # re-issue IDLE after this long: servers may drop an IDLE after 30 minutes.
    idle: bool = True
    idle_renew_seconds: float = Field(default=1500, gt=0, le=1740)
    # Move processed mail to this folder (created when missing) instead of only
    # flagging it \Seen; empty = flag only. Mail is never deleted.
    processed_folder: str = ""
    # Larger messages are quarantined with their headers only (the whole message
    # stays in the mailbox).
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # Reconnect after errors with exponential backoff, capped at this.
    reconnect_max_seconds: float = Field(default=300, gt=0)
    # PostgreSQL: how often a daemon that does not hold this mailbox's lock tries to
    # take it over (another daemon reads the mailbox meanwhile).
    lock_retry_seconds: float = Field(default=15, gt=0)

    @model_validator(mode="after")
    def _imap_needs_login(self) -> MailboxSettings:
        if not self.username:
            raise ValueError("username is required")
        if self.security == "starttls":
            raise ValueError(
                "security = 'starttls' is not supported for IMAP (the IMAP client has no "
                "STARTTLS); use 'tls' (usually port 993) or 'none' on loopback"
            )
        return self


class ListenerSettings(_Section):
    kind: Literal["smtp", "lmtp"] = "smtp"
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    # A Unix socket to listen on instead of host and port (e.g. for Postfix lmtp:unix:).
    path: str = ""
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # Accept only these recipient addresses (550 for others); empty = any.
    recipients: list[Address] = []

    @field_validator("recipients")
    @classmethod
    def _normalise_recipients(cls, value: list[str]) -> list[str]:
        return [_lower(v) for v in value]


class OutboundSettings(_Credentials):
    transport: Literal["smtp", "maildir"] = "smtp"
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Security = "none"
    maildir: str = "var/sent"
    timeout_seconds: float = Field(default=30, gt=0)
    # How long to wait for the server's reply to the end of DATA (RFC 5321 suggests
    # 10 minutes): giving up earlier leaves a notification in doubt (state unknown).
    data_timeout_seconds: float = Field(default=600, gt=0)
    batch_size: int = Field(default=100, ge=1, le=10000)
    retry_hours: float = Field(default=48, gt=0)  # give up on a notification after this
    # How often the daemon looks for notifications queued by other processes (the CLI);
    # its own are sent at once.
    poll_seconds: float = Field(default=5, gt=0)
    # A claimed batch returns to the queue if its relay has not started on it after
    # this long (a crashed daemon); each row is taken over with a compare-and-set.
    claim_seconds: float = Field(default=60, gt=0)
    # Send from a process of its own (`run` and `run --once`), so that sending gets a
    # core of its own. Pays off on PostgreSQL with two or more cores; on SQLite the
    # two processes queue for its single write lock instead.
    relay_process: bool = False


class DaemonSettings(_Section):
    # On SIGTERM/SIGINT: stop taking new work, finish the message in hand, send what
    # can be sent, and exit within this many seconds.
    shutdown_seconds: float = Field(default=10, gt=0)


class SecuritySettings(_Section):
    # HMAC-SHA256 key that signs our Message-IDs, so a forged In-Reply-To cannot
    # attach a mail to a ticket. Empty: a key is made once and kept in the database.
    message_id_key_file: str = ""
    # Keys used before the current one: Message-IDs they signed are still recognised.
    previous_message_id_key_files: list[str] = []
    # Authentication-Results headers count only from these authserv-ids (the desk's
    # own border MTA); anyone can write the header, so others are ignored. Empty: none.
    trusted_authserv_ids: list[str] = []

    @field_validator("message_id_key_file", "previous_message_id_key_files")
    @classmethod
    def _readable_key_files(cls, value: str | list[str]) -> str | list[str]:
        for path in [value] if isinstance(value, str) else value:
            if path and not os.access(path, os.R_OK):
                raise ValueError(f"key file {path!r} is not readable")
            if path and len(Path(path).read_bytes().strip()) < 16:
                raise ValueError(f"key file {path!r} holds fewer than 16 bytes")
        return value

    @field_validator("trusted_authserv_ids")
    @classmethod
    def _normalise_ids(cls, value: list[str]) -> list[str]:
        return [_lower(v) for v in value]


StrangerPolicy = Literal["new_ticket", "internal_note", "ignore"]


class AccessSettings(_Section):
    # Agents (addresses, or "@domain" for a whole domain) may add to any ticket by mail.
    agents: list[str] = []
    # Groups of mail domains that are one customer organisation, e.g.
    # [["acme.nl", "acme.com"]]: anyone at these domains may add to the others' tickets.
    organisations: list[list[str]] = []
    # Treat an address at the requester's own domain as the same organisation (never
    # for public mail domains such as gmail.com).
    same_domain: bool = True
    # What mail from anyone else that names a ticket (reference or thread) becomes:
    # "new_ticket" (a new ticket linked to the one named; the sender learns nothing of
    # it), "internal_note" (added to the ticket as a note for agents only, nobody is
    # told), or "ignore" (recorded, not acted on).
    strangers: StrangerPolicy = "new_ticket"
    # Mailing-list mail (List-Id, List-Unsubscribe, List-Post): "ignore" (recorded
    # only) or "accept" (taken in like any mail, still never auto-answered in a loop).
    mailing_lists: Literal["ignore", "accept"] = "ignore"

    @field_validator("agents")
    @classmethod
    def _agent_entries(cls, value: list[str]) -> list[str]:
        out = []
        for entry in value:
            entry = _lower(entry)
            _local, at, domain = entry.rpartition("@")
            if not at or not domain or "." not in domain or any(c in entry for c in " <>"):
                raise ValueError(f"{entry!r} is neither an address nor @domain")
            out.append(entry)
        return out

    @field_validator("organisations")
    @classmethod
    def _domains(cls, value: list[list[str]]) -> list[list[str]]:
        groups = []
        for group in value:
            domains = [_lower(d).lstrip("@") for d in group]
            bad = [d for d in domains if "." not in d or "@" in d or " " in d]
            if bad:
                raise ValueError(f"not mail domains: {', '.join(bad)}")
            groups.append(domains)
        return groups


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CalendarSettings(_Section):
    # When the desk is open: SLA due times count office hours on business days only
    # (contracts with 24/7 support count all hours). Public holidays of the Netherlands
    # come from the `holidays` package.
    timezone: str = "Europe/Amsterdam"
    office_start: time = time(8, 30)
    office_end: time = time(17, 0)
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = [
        "mon", "tue", "wed", "thu", "fri",
    ]  # fmt: skip
    # Extra days the desk is closed, e.g. ["2026-12-24", "2026-12-31"].
    closing_days: list[date] = []
    # Public holidays (by their Dutch name) the desk works on anyway, e.g. ["Goede vrijdag"].
    open_on_holidays: list[str] = []

    @model_validator(mode="after")
    def _usable(self) -> CalendarSettings:
        self.calendar()  # refuses an unknown timezone, no weekdays, hours that end first
        return self

    def calendar(self) -> BusinessCalendar:
        hours = OfficeHours(
            start=self.office_start,
            end=self.office_end,
            weekdays=frozenset(_WEEKDAYS.index(day) for day in self.weekdays),
        )
        return BusinessCalendar(
            hours,
            timezone=self.timezone,
            closing_days=self.closing_days,
            open_on_holidays=self.open_on_holidays,
        )


_FIVE = Field(min_length=5, max_length=5)


class SlaSettings(_Section):
    # Targets per priority 1..5, in office hours for `sla` contracts and in clock hours
    # for `sla_24x7`; an organisation's own targets (customers import) win.
    first_response_hours: Annotated[list[Annotated[float, Field(gt=0)]], _FIVE] = [
        1, 2, 4, 8.5, 8.5,
    ]  # fmt: skip
    resolution_hours: Annotated[list[Annotated[float, Field(gt=0)]], _FIVE] = [
        4, 8.5, 17, 42.5, 85,
    ]  # fmt: skip
    # Without a contract: an answer within one working day, no resolution target.
    no_contract_first_response_hours: float = Field(default=8.5, gt=0)
    # The priority the targets use until an agent sets impact and urgency.
    unprioritised: int = Field(default=3, ge=1, le=5)
    # The team is warned when this fraction of a target has passed, and at the breach.
    warn_fraction: float = Field(default=0.8, gt=0, lt=1)

    def rules(self) -> SlaRules:
        return SlaRules(
            first_response_hours=tuple(self.first_response_hours),
            resolution_hours=tuple(self.resolution_hours),
            no_contract_first_response_hours=self.no_contract_first_response_hours,
            unprioritised=self.unprioritised,
            warn_fraction=self.warn_fraction,
        )


class TimerSettings(_Section):
    # How often the daemon looks for timers that are due (SLA warnings, reminders,
    # closing, wake-ups); each fires once, whichever daemon takes it.
    poll_seconds: float = Field(default=30, gt=0)
    # awaiting_customer: remind the customer after this many working days without an
    # answer, and close the ticket this many working days after the reminder.
    reminder_working_days: int = Field(default=3, ge=1)
    close_after_working_days: int = Field(default=4, ge=1)
    # awaiting_acceptance: closed as accepted after this many working days of silence.
    acceptance_working_days: int = Field(default=5, ge=1)


class OncallSettings(_Section):
    # The 24/7 on-call service (storingsdienst): an urgent incident from a customer
    # with a `sla_24x7` contract outside office hours pages this address (e.g. an SMS
    # gateway), once per ticket. Empty: no pages.
    address: Address | Literal[""] = ""
    # The number 24/7 customers are given in their notifications outside office hours.
    phone: str = "085 489 09 73"
    # Words in a subject that mark a mail urgent (besides Importance/X-Priority headers).
    urgent_words: list[str] = list(DEFAULT_URGENT_WORDS)


class CustomerSettings(_Section):
    # A new ticket from an address whose domain no organisation has: "accept" (a
    # contact without contract) or "hold" (quarantined at stage `review` until an agent
    # adds the customer and reprocesses it, or discards it).
    unknown_domain: Literal["accept", "hold"] = "accept"


class LimitSettings(_Section):
    # Automatic answers to incoming mail (created, info added, reopened, ...) per
    # ticket and per recipient address; agents' messages and team notices are not
    # limited. A notification over a limit is kept as `suppressed`, with the reason.
    # 0 = no limit.
    per_ticket_10_minutes: int = Field(default=10, ge=0)
    per_ticket_hour: int = Field(default=25, ge=0)
    per_recipient_day: int = Field(default=40, ge=0)


class AttachmentSettings(_Section):
    # Attachments are stored once per content (SHA-256) in the database. Larger ones
    # are recorded with name, type and size only, and the sender is told.
    max_attachment_bytes: int = Field(default=20 * 1024 * 1024, ge=0)
    # Together, per message; attachments past this are recorded without content.
    max_message_attachment_bytes: int = Field(default=25 * 1024 * 1024, ge=0)


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # "text" (for people), "keyvalue" (ts=... level=... msg="..." ref=... message_id=...)
    # or "json" (one object per line). Lines about a message carry its reference and
    # Message-ID in every format.
    format: Literal["text", "keyvalue", "json"] = "text"


def split_listen(value: str) -> tuple[str, int]:
    """(host, port) of "host:port" or "[ipv6]:port"."""
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:9425)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or (":" in host and not value.startswith("[")):
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9425")
    return host, int(port)


class HttpSettings(_Section):
    # GET /healthz and /metrics (Prometheus) on this address; "" = no HTTP endpoint.
    # It has no authentication: keep it on loopback or behind a firewall.
    listen: str = "127.0.0.1:9425"
    # /healthz answers 503 when a notification has been due for longer than this.
    outbox_max_age_seconds: float = Field(default=900, gt=0)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        value = value.strip()
        if value:
            split_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None when the endpoint is off."""
        return split_listen(self.listen) if self.listen else None


class Settings(_Section):
    desk: DeskSettings = DeskSettings()
    database: DatabaseSettings = DatabaseSettings()
    teams: list[TeamSettings] = Field(min_length=1)
    mailboxes: list[MailboxSettings] = []
    listeners: list[ListenerSettings] = []
    outbound: OutboundSettings = OutboundSettings()
    daemon: DaemonSettings = DaemonSettings()
    security: SecuritySettings = SecuritySettings()
    access: AccessSettings = AccessSettings()
    customers: CustomerSettings = CustomerSettings()
    calendar: CalendarSettings = CalendarSettings()
    sla: SlaSettings = SlaSettings()
    timers: TimerSettings = TimerSettings()
    oncall: OncallSettings = OncallSettings()
    limits: LimitSettings = LimitSettings()
    attachments: AttachmentSettings = AttachmentSettings()
    logging: LoggingSettings = LoggingSettings()
    http: HttpSettings = HttpSettings()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        defaults = [t.key for t in self.teams if t.default]
        if len(defaults) != 1:
            raise ValueError(
                f"exactly one team must have default = true (found {len(defaults)}: "
                f"{', '.join(defaults) or 'none'})"
            )
        keys = [t.key for t in self.teams]
        if len(set(keys)) != len(keys):
            raise ValueError(f"team keys must be unique (got {', '.join(keys)})")
        desk_addresses = self.desk_addresses
        if self.oncall.address in desk_addresses:
            raise ValueError("oncall.address must not be a desk address the gateway reads")
        for team in self.teams:
            looped = sorted(desk_addresses & set(team.notify))
            if looped:
                raise ValueError(
                    f"team {team.key!r}: notify must not name a desk address the gateway "
                    f"reads ({', '.join(looped)})"
                )
        names = [m.name for m in self.mailboxes]
        if len(set(names)) != len(names):
            raise ValueError(f"mailbox names must be unique (got {', '.join(names)})")
        return self

    @property
    def desk_addresses(self) -> set[str]:
        """Every address that reaches the desk: the sender and each team's address."""
        return {self.desk.sender} | {t.address for t in self.teams}

    @property
    def desk_domain(self) -> str:
        """The domain of our Message-IDs: the sender's."""
        return self.desk.sender.rpartition("@")[2]

    @property
    def default_team(self) -> TeamSettings:
        return next(t for t in self.teams if t.default)

    def team(self, key: str) -> TeamSettings:
        return next(t for t in self.teams if t.key == key)


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def describe_errors(error: ValidationError) -> list[str]:
    """One line per problem: `key.path: why`."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{_location(item['loc'])}: {message}")
    return lines


def resolve_config_path(path: str | os.PathLike[str] | None) -> Path:
    """The config file to read: the argument, else $TICKET_GATEWAY_CONFIG, else the demo."""
    if path:
        return Path(path)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_settings(path: Path) -> Settings:
    """Read and validate a config file; raise ConfigError listing every problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read config file: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from exc
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, describe_errors(exc)) from exc
