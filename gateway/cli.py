"""The `ticket-gateway` command: run the daemon and work tickets from a shell."""

from __future__ import annotations

import asyncio
import csv
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy import select
from sqlalchemy.orm import undefer

from gateway import __version__
from gateway.app import (
    Gateway,
    NotMigrated,
    build,
    install_signal_handlers,
    prepare_database,
    run_forever,
    run_once,
)
from gateway.config import ConfigError, Settings, load_settings, resolve_config_path
from gateway.domain.billing import CustomerBill, TimeKind, month_bounds, parse_duration
from gateway.domain.customers import (
    Billing,
    Contract,
    CustomerFileError,
    OrganisationRecord,
    parse_csv,
    parse_toml,
)
from gateway.domain.model import Category, Impact, Status, Urgency
from gateway.logs import configure_logging
from gateway.notify.render import human_size
from gateway.outbox import STATES, NotRetryable, retry_notification
from gateway.pipeline import Outcome, TemporaryFailure, utc_now
from gateway.quarantine import QuarantineError, discard, held_ids, reprocess
from gateway.service import (
    TicketError,
    agent_reply,
    change_status,
    get_ticket,
    override_priority,
    set_category,
    set_impact_urgency,
    set_team,
)
from gateway.service.attachments import attachment_content, ticket_attachments
from gateway.service.billing import add_time, billing_report, format_minutes, sla_month
from gateway.service.organisations import (
    ImportSummary,
    contact_organisation,
    contact_view,
    domains_of,
    get_organisation,
    import_organisations,
    organisation_record,
    upsert_contact,
)
from gateway.store import migrate as migrations
from gateway.store.models import Organisation, OutboxMessage, QuarantinedMessage, Ticket
from gateway.views import (
    attachment_view,
    organisation_detail,
    organisation_view,
    outbox_view,
    quarantine_view,
    ticket_detail,
    ticket_summary,
)

T = TypeVar("T")
AGENT_ENV = "TICKET_GATEWAY_AGENT"
EXIT_USAGE = 2


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"ticket-gateway: {message}", err=True)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "settings" not in obj:
        path = resolve_config_path(obj.get("config_path"))
        try:
            obj["settings"] = load_settings(path)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(f"{exc.path}: {problem}", err=True)
            sys.exit(EXIT_USAGE)
    settings: Settings = obj["settings"]
    return settings


def _with_gateway(ctx: click.Context, work: Callable[[Gateway], Awaitable[T]]) -> T:
    """Build the gateway, check the schema, run `work`, close everything."""
    settings = _settings(ctx)
    # The file the settings came from: SIGHUP rereads it, a relay process reads it.
    config_path = resolve_config_path(ctx.obj.get("config_path"))

    async def main() -> T:
        gateway = build(settings, config_path=config_path)
        try:
            await prepare_database(gateway)
            return await work(gateway)
        finally:
            await gateway.close()

    try:
        return asyncio.run(main())
    except NotMigrated as exc:
        _fail(str(exc))
    except (TicketError, QuarantineError, NotRetryable) as exc:
        _fail(str(exc))


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _print_rows(
    rows: list[dict[str, Any]],
    as_json: bool,
    empty: str,
    line: Callable[[dict[str, Any]], str],
) -> None:
    """A listing as JSON, or one line per row for people."""
    if as_json:
        _print_json(rows)
    elif not rows:
        click.echo(empty)
    else:
        for row in rows:
            click.echo(line(row))


def _agent(value: str | None) -> str:
    return (value or os.environ.get(AGENT_ENV) or getpass.getuser()).lower()


def _parse_when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date/time (e.g. 2026-12-01T09:00+01:00)"
        ) from None
    return when if when.tzinfo else when.astimezone()


def _choice(enum: type[StrEnum]) -> click.Choice[str]:
    return click.Choice([member.value for member in enum])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TICKET_GATEWAY_CONFIG",
    help="Config file (default: $TICKET_GATEWAY_CONFIG, else config/demo.toml).",
)
@click.version_option(__version__, prog_name="ticket-gateway")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """ticket-gateway: an e-mail servicedesk. Mail in, tickets with references, mail out."""
    ctx.ensure_object(dict)["config_path"] = config_path


@main.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate the config file: one line per problem and exit 2, or exit 0 when fine."""
    settings = _settings(ctx)
    path = resolve_config_path(ctx.obj.get("config_path"))
    click.echo(
        f"{path}: OK ({len(settings.teams)} team(s), {len(settings.mailboxes)} mailbox(es), "
        f"{len(settings.listeners)} listener(s), outbound {settings.outbound.transport})"
    )


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the database schema to this version."""
    settings = _settings(ctx)
    configure_logging(settings.logging)

    async def work() -> str | None:
        from gateway.store.db import create_engine

        engine = create_engine(settings.database.url)
        try:
            await migrations.upgrade(engine)
            return await migrations.current_revision(engine)
        finally:
            await engine.dispose()

    revision = asyncio.run(work())
    click.echo(f"database at revision {revision}")


@main.command()
@click.option(
    "--once", is_flag=True, help="Burst mode: process what waits, send what is due, exit."
)
@click.pass_context
def run(ctx: click.Context, once: bool) -> None:
    """Run the daemon (mailboxes, listeners, outbox relay, timers) until SIGTERM/SIGINT.

    SIGHUP reloads the config file and templates: a config that does not validate is
    refused and the running one kept; database, mailboxes, listeners, http.listen and
    desk.sender need a restart. GET /healthz and /metrics (Prometheus) are served on
    http.listen (default 127.0.0.1:9425; not with --once). Logs go to stderr as
    logging.format says: text, keyvalue or json.
    """
    settings = _settings(ctx)
    configure_logging(settings.logging)

    async def burst(gateway: Gateway) -> int:
        summary = await run_once(gateway)
        click.echo(
            f"processed {summary.messages} message(s); notifications sent {summary.sent}, "
            f"failed {summary.failed}, to retry {summary.retrying}"
        )
        for error in summary.errors:
            click.echo(f"error: {error}", err=True)
        return 1 if summary.errors else 0

    async def daemon(gateway: Gateway) -> int:
        stop = asyncio.Event()
        install_signal_handlers(stop, gateway)
        await run_forever(gateway, stop)
        return 0

    sys.exit(_with_gateway(ctx, burst if once else daemon))


@main.command()
@click.option("--status", type=_choice(Status), help="Only tickets in this status.")
@click.option("--team", help="Only tickets of this team (its key).")
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def tickets(
    ctx: click.Context, status: str | None, team: str | None, limit: int, as_json: bool
) -> None:
    """List tickets, most recently updated first."""
    settings = _settings(ctx)
    if team is not None:
        _check_team(settings, team)

    async def work(gateway: Gateway) -> list[dict[str, Any]]:
        query = select(Ticket).order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(limit)
        if status:
            query = query.where(Ticket.status == status)
        if team:
            query = query.where(Ticket.team == team)
        async with gateway.sessions() as session:
            return [ticket_summary(t) for t in await session.scalars(query)]

    _print_rows(
        _with_gateway(ctx, work),
        as_json,
        "no tickets",
        lambda row: (
            f"{row['reference']:<16} {row['status']:<20} P{row['priority'] or '-'}  "
            f"{row['team']:<10} {row['updated_at'][:16]}  {row['requester']:<30} {row['subject']}"
        ),
    )


def _check_team(settings: Settings, team: str) -> None:
    keys = [t.key for t in settings.teams]
    if team not in keys:
        raise click.BadParameter(
            f"{team!r} is not one of {', '.join(map(repr, keys))}", param_hint="'--team'"
        )


@main.group()
def ticket() -> None:
    """Show and work one ticket."""


@ticket.command("show")
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def ticket_show(ctx: click.Context, reference: str, as_json: bool) -> None:
    """Show a ticket with its articles and history."""

    async def work(gateway: Gateway) -> dict[str, Any]:
        async with gateway.sessions() as session:
            return await ticket_detail(session, await get_ticket(session, reference))

    detail = _with_gateway(ctx, work)
    if as_json:
        _print_json(detail)
        return
    click.echo(f"{detail['reference']}  {detail['subject']}")
    for key in (
        "status",
        "category",
        "impact",
        "urgency",
        "priority",
        "team",
        "requester",
        "created_at",
        "updated_at",
        "linked_to",
    ):
        if detail[key] is not None:
            click.echo(f"  {key:<12} {detail[key]}")
    if detail["participants"]:
        click.echo(f"  {'participants':<12} {', '.join(detail['participants'])}")
    if detail["bouncing"]:
        click.echo(f"  {'bouncing':<12} {', '.join(detail['bouncing'])}")
    for article in detail["articles"]:
        arrow = "<-" if article["direction"] == "in" else "->"
        hidden = "" if article["public"] else " (internal)"
        click.echo(
            f"\n{arrow} {article['created_at'][:16]} {article['kind']}{hidden} {article['author']}"
        )
        if article["authentication"]:
            auth = article["authentication"]
            click.echo(f"   spf={auth['spf']} dkim={auth['dkim']} dmarc={auth['dmarc']}")
        click.echo("   " + article["body"].replace("\n", "\n   "))
        for item in article["attachments"]:
            kept = "" if item["kept"] else f", not kept: {item['refused']}"
            click.echo(f"   [{item['id']}] {item['filename']} ({human_size(item['size'])}{kept})")
    for bounce in detail["bounces"]:
        click.echo(
            f"\nbounce {bounce['at'][:16]} {bounce['recipient']}: {bounce['action']} "
            f"{bounce['status'] or ''} {bounce['diagnostic']}".rstrip()
        )
    click.echo("\nhistory:")
    for entry in detail["history"]:
        why = f" ({entry['reason']})" if entry["reason"] else ""
        click.echo(
            f"  {entry['at'][:16]} {entry['field']}: {entry['old']} -> {entry['new']} "
            f"by {entry['by']}{why}"
        )


@ticket.command("attachments")
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def ticket_attachments_cmd(ctx: click.Context, reference: str, as_json: bool) -> None:
    """List a ticket's attachments (save one with `attachment save ID PATH`)."""

    async def work(gateway: Gateway) -> list[dict[str, Any]]:
        async with gateway.sessions() as session:
            ticket = await get_ticket(session, reference)
            return [attachment_view(a) for a in await ticket_attachments(session, ticket)]

    _print_rows(
        _with_gateway(ctx, work),
        as_json,
        "no attachments",
        lambda row: (
            f"{row['id']:>6} {human_size(row['size']):>9}  {row['content_type']:<28} "
            f"{row['filename']}" + ("" if row["kept"] else f"  (not kept: {row['refused']})")
        ),
    )


@main.group()
def attachment() -> None:
    """Attachments of incoming mail."""


@attachment.command("save")
@click.argument("attachment_id", metavar="ID", type=click.IntRange(1))
@click.argument("path", type=click.Path(dir_okay=True, writable=True))
@click.option("--force", is_flag=True, help="Overwrite PATH when it exists.")
@click.pass_context
def attachment_save(ctx: click.Context, attachment_id: int, path: str, force: bool) -> None:
    """Write an attachment's content to PATH (a directory: under its own file name;
    '-': standard output)."""

    async def work(gateway: Gateway) -> tuple[str, bytes]:
        async with gateway.sessions() as session:
            row, data = await attachment_content(session, attachment_id)
            return row.filename, data

    filename, data = _with_gateway(ctx, work)
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.is_dir():
        target = target / filename
    try:
        with target.open("wb" if force else "xb") as out:
            out.write(data)
    except FileExistsError:
        _fail(f"{target} exists; use --force to overwrite it")
    except OSError as exc:
        _fail(f"cannot write {target}: {exc.strerror}")
    click.echo(f"{target}: {len(data)} bytes")


@ticket.command("reply")
@click.argument("reference")
@click.option("--body", help="The answer's text.")
@click.option(
    "--body-file",
    type=click.File("r", encoding="utf-8"),
    help="Read the text from a file ('-': stdin).",
)
@click.option(
    "--status", type=_choice(Status), help="Also set this status (announced with the answer)."
)
@click.option("--scheduled-for", help="Date/time for status scheduled (ISO 8601).")
@click.option("--agent", help=f"Who answers (default: ${AGENT_ENV} or the login name).")
@click.pass_context
def ticket_reply(
    ctx: click.Context,
    reference: str,
    body: str | None,
    body_file: Any,
    status: str | None,
    scheduled_for: str | None,
    agent: str | None,
) -> None:
    """A public answer, mailed to the requester and the participants."""
    if (body is None) == (body_file is None):
        raise click.UsageError("give exactly one of --body and --body-file")
    text = body if body is not None else body_file.read()
    when = _parse_when(scheduled_for)

    async def work(gateway: Gateway) -> str:
        async with gateway.sessions() as session, session.begin():
            t = await get_ticket(session, reference)
            await agent_reply(
                session,
                gateway.desk,
                t,
                agent=_agent(agent),
                body=text,
                now=utc_now(),
                status=Status(status) if status else None,
                scheduled_for=when,
            )
            return f"{t.reference}: reply queued; status {t.status}"

    click.echo(_with_gateway(ctx, work))


@ticket.command("set")
@click.argument("reference")
@click.option("--status", type=_choice(Status))
@click.option("--scheduled-for", help="Date/time for status scheduled (ISO 8601).")
@click.option("--category", type=_choice(Category))
@click.option("--impact", type=_choice(Impact))
@click.option("--urgency", type=_choice(Urgency))
@click.option("--priority", type=click.IntRange(1, 5), help="Override the matrix (needs --reason).")
@click.option("--reason", help="Why (required with --priority).")
@click.option("--team", help="Move the ticket to this team (its key).")
@click.option("--agent", help=f"Who changes it (default: ${AGENT_ENV} or the login name).")
@click.pass_context
def ticket_set(
    ctx: click.Context,
    reference: str,
    status: str | None,
    scheduled_for: str | None,
    category: str | None,
    impact: str | None,
    urgency: str | None,
    priority: int | None,
    reason: str | None,
    team: str | None,
    agent: str | None,
) -> None:
    """Change status, category, impact/urgency, priority or team (kept in the history)."""
    settings = _settings(ctx)
    if not any((status, category, impact, urgency, priority, team)):
        raise click.UsageError(
            "nothing to change: give --status, --category, --impact, "
            "--urgency, --priority or --team"
        )
    if priority is not None and not (reason or "").strip():
        raise click.UsageError("--priority overrides the impact x urgency matrix: give --reason")
    if team is not None:
        _check_team(settings, team)
    when = _parse_when(scheduled_for)

    async def work(gateway: Gateway) -> dict[str, Any]:
        now = utc_now()
        by = _agent(agent)
        async with gateway.sessions() as session, session.begin():
            t = await get_ticket(session, reference)
            if category:
                await set_category(session, t, Category(category), by=by, now=now)
            if impact or urgency:
                await set_impact_urgency(
                    session,
                    gateway.desk,
                    t,
                    impact=Impact(impact) if impact else None,
                    urgency=Urgency(urgency) if urgency else None,
                    by=by,
                    now=now,
                )
            if priority is not None:
                await override_priority(
                    session, gateway.desk, t, priority, reason=reason or "", by=by, now=now
                )
            if team:
                await set_team(session, gateway.desk, t, team, by=by, now=now)
            if status:
                await change_status(
                    session,
                    gateway.desk,
                    t,
                    Status(status),
                    by=by,
                    now=now,
                    reason=reason,
                    scheduled_for=when,
                )
            return ticket_summary(t)

    summary = _with_gateway(ctx, work)
    click.echo(
        f"{summary['reference']}: status {summary['status']}, priority "
        f"{summary['priority'] or '-'}, team {summary['team']}"
    )


@main.group()
def quarantine() -> None:
    """Messages that failed processing, kept whole."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "show_all", is_flag=True, help="Include reprocessed and discarded ones.")
@click.pass_context
def quarantine_list(ctx: click.Context, as_json: bool, show_all: bool) -> None:
    """List quarantined messages."""

    async def work(gateway: Gateway) -> list[dict[str, Any]]:
        query = select(QuarantinedMessage).order_by(QuarantinedMessage.id)
        if not show_all:
            query = query.where(QuarantinedMessage.state == "held")
        async with gateway.sessions() as session:
            return [quarantine_view(q) for q in await session.scalars(query)]

    _print_rows(
        _with_gateway(ctx, work),
        as_json,
        "quarantine is empty",
        lambda row: (
            f"{row['id']:>6} {row['created_at'][:16]} {row['stage']:<8} {row['source']:<24} "
            f"{row['error']}"
        ),
    )


@quarantine.command("show")
@click.argument("entry_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--raw", is_flag=True, help="Print the raw message bytes.")
@click.pass_context
def quarantine_show(ctx: click.Context, entry_id: int, as_json: bool, raw: bool) -> None:
    """Show one quarantined message: the stage, the error and the traceback."""

    async def work(gateway: Gateway) -> tuple[dict[str, Any], bytes]:
        async with gateway.sessions() as session:
            row = await session.get(
                QuarantinedMessage, entry_id, options=[undefer(QuarantinedMessage.raw)]
            )
            if row is None:
                raise TicketError(f"no quarantine entry {entry_id}")
            return quarantine_view(row, full=True), row.raw

    view, data = _with_gateway(ctx, work)
    if raw:
        sys.stdout.buffer.write(data)
    elif as_json:
        _print_json(view)
    else:
        for key, value in view.items():
            if key != "traceback":
                click.echo(f"{key:<10} {value}")
        click.echo(view["traceback"])


def _outcome_line(outcome: Outcome) -> str:
    detail = outcome.reference or outcome.reason or ""
    return f"{outcome.kind} {detail}".strip()


@quarantine.command("reprocess")
@click.argument("entry_id", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="Every held entry, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def quarantine_reprocess(
    ctx: click.Context, entry_id: int | None, every: bool, as_json: bool
) -> None:
    """Run held messages through the pipeline again (after a fix); each is taken in once.

    A message that fails again stays held, with the new error and one more attempt.
    """
    if (entry_id is None) == (not every):
        raise click.UsageError("give an entry ID or --all (not both)")

    async def work(gateway: Gateway) -> list[dict[str, Any]]:
        ids = await held_ids(gateway.sessions) if every else [entry_id or 0]
        results: list[dict[str, Any]] = []
        for one in ids:
            try:
                outcome = await reprocess(gateway.sessions, gateway.pipeline, one)
            except TemporaryFailure as exc:
                raise QuarantineError(f"entry {one}: temporary failure, try again: {exc}") from exc
            results.append({"id": one, "outcome": outcome.kind, "reference": outcome.reference,
                            "reason": outcome.reason})  # fmt: skip
        return results

    results = _with_gateway(ctx, work)
    _print_rows(
        results,
        as_json,
        "nothing held to reprocess",
        lambda row: f"{row['id']:>6} {row['outcome']} {row['reference'] or row['reason'] or ''}",
    )
    if any(row["outcome"] == "quarantined" for row in results):
        sys.exit(1)


@quarantine.command("discard")
@click.argument("entry_id", type=int)
@click.option("--agent", help="Who discards it (default: $TICKET_GATEWAY_AGENT or login).")
@click.option("--json", "as_json", is_flag=True, help="Print the closed entry as JSON.")
@click.pass_context
def quarantine_discard(ctx: click.Context, entry_id: int, agent: str | None, as_json: bool) -> None:
    """Mark a held message as dealt with; it is kept for the record, never processed."""
    by = _agent(agent)

    async def work(gateway: Gateway) -> dict[str, Any]:
        await discard(gateway.sessions, entry_id, by, utc_now())
        async with gateway.sessions() as session:
            row = await session.get(QuarantinedMessage, entry_id)
            assert row is not None
            return quarantine_view(row)

    view = _with_gateway(ctx, work)
    if as_json:
        _print_json(view)
    else:
        click.echo(f"quarantine entry {entry_id} discarded")


@main.group()
def outbox() -> None:
    """Notifications waiting, sent or failed."""


@outbox.command("list")
@click.option(
    "--state",
    type=click.Choice(STATES),
    help="Only this state (unknown: the relay stopped mid-delivery; not resent by itself).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def outbox_list(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """List notifications with their state, attempts and last error."""

    async def work(gateway: Gateway) -> list[dict[str, Any]]:
        query = (
            select(OutboxMessage, Ticket.reference)
            .join(Ticket, Ticket.id == OutboxMessage.ticket_id, isouter=True)
            .order_by(OutboxMessage.id)
        )
        if state:
            query = query.where(OutboxMessage.state == state)
        async with gateway.sessions() as session:
            return [outbox_view(row, ref) for row, ref in (await session.execute(query)).all()]

    _print_rows(
        _with_gateway(ctx, work),
        as_json,
        "outbox is empty",
        lambda row: (
            f"{row['id']:>6} {row['state']:<8} {row['attempts']:>2} {row['ticket'] or '-':<16} "
            f"{row['to']:<30} {row['subject']}"
            + (f"  [{row['last_error']}]" if row["last_error"] else "")
        ),
    )


@outbox.command("retry")
@click.argument("row_id", type=int)
@click.pass_context
def outbox_retry(ctx: click.Context, row_id: int) -> None:
    """Send a failed or in-doubt (unknown) notification again, as soon as the relay runs."""

    async def work(gateway: Gateway) -> str:
        async with gateway.sessions() as session, session.begin():
            row = await retry_notification(session, row_id, utc_now())
            return row.recipient

    to = _with_gateway(ctx, work)
    click.echo(f"notification {row_id} to {to} queued")


@ticket.command("time")
@click.argument("reference")
@click.argument("duration")
@click.option("--date", "work_date", help="The day of the work (YYYY-MM-DD; default today).")
@click.option(
    "--kind",
    type=_choice(TimeKind),
    default=TimeKind.BILLABLE.value,
    show_default=True,
    help="warranty and sla time are not charged.",
)
@click.option("--note", default="", help="What was done.")
@click.option("--agent", help=f"Who worked (default: ${AGENT_ENV} or the login name).")
@click.pass_context
def ticket_time(
    ctx: click.Context,
    reference: str,
    duration: str,
    work_date: str | None,
    kind: str,
    note: str,
    agent: str | None,
) -> None:
    """Register time spent on a ticket: DURATION as 45m, 1h30m, 1.5h or 1:30."""
    try:
        minutes = parse_duration(duration)
        day = date.fromisoformat(work_date) if work_date else date.today()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc

    async def work(gateway: Gateway) -> str:
        async with gateway.sessions() as session, session.begin():
            t = await get_ticket(session, reference)
            await add_time(
                session, t, minutes, kind=TimeKind(kind), work_date=day, by=_agent(agent),
                now=utc_now(), note=note,
            )  # fmt: skip
            return f"{t.reference}: {format_minutes(minutes)} {kind} on {day.isoformat()}"

    click.echo(_with_gateway(ctx, work))


@main.group()
def report() -> None:
    """Monthly reports: billing per customer, SLA per team and priority."""


def _period(value: str) -> str:
    try:
        month_bounds(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--period'") from exc
    return value


def _bill_view(bill: CustomerBill) -> dict[str, Any]:
    return {
        "customer": bill.number,
        "name": bill.name,
        "billing": bill.billing,
        "tickets": [
            {
                "reference": t.reference,
                "subject": t.subject,
                **{k.value: m for k, m in t.minutes.items()},
            }
            for t in bill.tickets
        ],
        "warranty_minutes": bill.total(TimeKind.WARRANTY),
        "sla_minutes": bill.total(TimeKind.SLA),
        "billable_minutes": bill.total(TimeKind.BILLABLE),
        "included_minutes": bill.included_minutes,
        "included_used_minutes": bill.included_used_minutes,
        "invoiced_minutes": bill.invoiced_minutes,
        "tickets_submitted": bill.tickets_submitted,
        "submission_fees": bill.submission_fees_cents / 100,
    }


@report.command("billing")
@click.option("--period", required=True, help="The month, YYYY-MM.")
@click.option("--customer", help="One customer number.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: one row per customer and ticket.")
@click.pass_context
def report_billing(
    ctx: click.Context, period: str, customer: str | None, as_json: bool, as_csv: bool
) -> None:
    """Per customer and ticket: warranty and SLA time (not charged), billable time, the
    included hours used and the overage to invoice (sla_settlement), submission fees."""
    period = _period(period)

    async def work(gateway: Gateway) -> list[dict[str, Any]]:
        async with gateway.sessions() as session:
            report = await billing_report(session, gateway.desk, period, customer)
            return [_bill_view(b) for b in report]

    views = _with_gateway(ctx, work)
    if as_json:
        _print_json(views)
    elif as_csv:
        _print_billing_csv(views)
    elif not views:
        click.echo(f"no time or fees in {period}")
    else:
        for view in views:
            _print_bill(view)


def _print_billing_csv(views: list[dict[str, Any]]) -> None:
    out = csv.writer(sys.stdout)
    out.writerow(
        ["customer", "name", "billing", "ticket", "subject", "warranty_minutes",
         "sla_minutes", "billable_minutes"]
    )  # fmt: skip
    for view in views:
        for t in view["tickets"]:
            out.writerow(
                [view["customer"], view["name"], view["billing"], t["reference"], t["subject"],
                 t["warranty"], t["sla"], t["billable"]]
            )  # fmt: skip
        out.writerow(
            [view["customer"], view["name"], view["billing"], "TOTAL", "",
             view["warranty_minutes"], view["sla_minutes"], view["billable_minutes"]]
        )  # fmt: skip


def _print_bill(view: dict[str, Any]) -> None:
    click.echo(f"{view['customer']}  {view['name']}  ({view['billing']})")
    for t in view["tickets"]:
        click.echo(
            f"  {t['reference']}  billable {format_minutes(t['billable'])}  "
            f"sla {format_minutes(t['sla'])}  warranty {format_minutes(t['warranty'])}  "
            f"{t['subject']}"
        )
    click.echo(
        f"  total: billable {format_minutes(view['billable_minutes'])}, not charged "
        f"{format_minutes(view['warranty_minutes'] + view['sla_minutes'])}"
    )
    if view["billing"] == "sla_settlement":
        click.echo(
            f"  included {format_minutes(view['included_minutes'])}, used "
            f"{format_minutes(view['included_used_minutes'])}"
        )
    click.echo(f"  to invoice: {format_minutes(view['invoiced_minutes'])}")
    if view["submission_fees"]:
        click.echo(
            f"  submission fees: {view['tickets_submitted']} tickets, EUR "
            f"{view['submission_fees']:.2f}"
        )


@report.command("sla")
@click.option("--period", required=True, help="The month, YYYY-MM (tickets created in it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def report_sla(ctx: click.Context, period: str, as_json: bool) -> None:
    """Per team and priority: first response and resolution met or breached, medians."""
    period = _period(period)

    async def work(gateway: Gateway) -> list[dict[str, Any]]:
        async with gateway.sessions() as session:
            lines = await sla_month(session, gateway.desk, period, utc_now())
        return [
            {
                "team": line.team,
                "priority": line.priority,
                "tickets": line.tickets,
                "first_response_met": line.first_response_met,
                "first_response_breached": line.first_response_breached,
                "resolution_met": line.resolution_met,
                "resolution_breached": line.resolution_breached,
                "median_first_response_hours": line.median_first_response_hours,
                "median_resolution_hours": line.median_resolution_hours,
            }
            for line in lines
        ]

    _print_rows(
        _with_gateway(ctx, work),
        as_json,
        f"no tickets created in {period}",
        lambda r: (
            f"{r['team']:<10} P{r['priority'] or '-'} {r['tickets']:>4} tickets  first response "
            f"{r['first_response_met']} met / {r['first_response_breached']} breached "
            f"(median {r['median_first_response_hours']} h)  resolution {r['resolution_met']} "
            f"met / {r['resolution_breached']} breached (median {r['median_resolution_hours']} h)"
        ),
    )


@main.group()
def customers() -> None:
    """Customer organisations: contracts, mail domains, contacts."""


def _read_customer_file(path: Path) -> list[OrganisationRecord]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}", 2)
    try:
        if path.suffix.lower() == ".csv":
            return parse_csv(text)
        if path.suffix.lower() == ".toml":
            return parse_toml(text)
    except CustomerFileError as exc:
        for problem in exc.problems:
            click.echo(f"{path}: {problem}", err=True)
        sys.exit(2)
    _fail(f"{path}: give a .toml or .csv file", 2)


@customers.command("import")
@click.argument(
    "path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--dry-run", is_flag=True, help="Check the file and say what would change.")
@click.pass_context
def customers_import(ctx: click.Context, path: Path, dry_run: bool) -> None:
    """Create or update organisations (by customer number) from FILE.toml or FILE.csv.

    TOML: [[organisations]] tables (number, name, domains, contract none|sla|sla_24x7,
    billing invoice|sla_settlement, included_hours, submission_fee, sla_targets, and
    [[organisations.contacts]] with address, name, language). CSV: one row per contact
    with the columns number,name,domains,contract,billing,included_hours,
    submission_fee,contact_address,contact_name,contact_language. An organisation's
    domains become the file's; contacts are added or updated. All or nothing.
    """
    records = _read_customer_file(path)

    async def work(gateway: Gateway) -> ImportSummary:
        async with gateway.sessions() as session:
            summary = await import_organisations(session, records, utc_now())
            await (session.rollback() if dry_run else session.commit())
            return summary

    summary = _with_gateway(ctx, work)
    verb = "would create" if dry_run else "created"
    click.echo(
        f"{path}: {verb} {len(summary.created)}, updated {len(summary.updated)} "
        f"organisations ({summary.domains} domains, {summary.contacts} contacts)"
    )


@customers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def customers_list(ctx: click.Context, as_json: bool) -> None:
    """List organisations with their contract and domains."""

    async def work(gateway: Gateway) -> list[dict[str, Any]]:
        async with gateway.sessions() as session:
            orgs = await session.scalars(select(Organisation).order_by(Organisation.number))
            return [organisation_view(o, await domains_of(session, o)) for o in orgs]

    _print_rows(
        _with_gateway(ctx, work),
        as_json,
        "no organisations",
        lambda row: (
            f"{row['number']:<12} {row['contract']:<9} {row['billing']:<15} {row['name']}"
            f"  ({' '.join(row['domains']) or 'no domains'})"
        ),
    )


@customers.command("show")
@click.argument("number")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def customers_show(ctx: click.Context, number: str, as_json: bool) -> None:
    """An organisation with its contract, SLA targets, domains and contacts."""

    async def work(gateway: Gateway) -> dict[str, Any]:
        async with gateway.sessions() as session:
            return await organisation_detail(session, await get_organisation(session, number))

    view = _with_gateway(ctx, work)
    if as_json:
        _print_json(view)
        return
    click.echo(f"{view['number']}  {view['name']}")
    for key in ("contract", "billing", "included_hours", "submission_fee", "sla_targets"):
        click.echo(f"  {key:<15} {view[key]}")
    click.echo(f"  {'domains':<15} {' '.join(view['domains']) or '-'}")
    for contact in view["contacts"]:
        click.echo(
            f"  contact         {contact['address']} {contact['name']} ({contact['language']})"
        )


@customers.command("set")
@click.argument("number")
@click.option("--name")
@click.option("--contract", type=_choice(Contract))
@click.option("--billing", type=_choice(Billing))
@click.option("--included-hours", type=click.FloatRange(0), help="Per month (sla_settlement).")
@click.option("--submission-fee", type=click.FloatRange(0), help="Euros per ticket.")
@click.option("--add-domain", multiple=True, help="A mail domain of the organisation.")
@click.option("--remove-domain", multiple=True)
@click.pass_context
def customers_set(
    ctx: click.Context,
    number: str,
    name: str | None,
    contract: str | None,
    billing: str | None,
    included_hours: float | None,
    submission_fee: float | None,
    add_domain: tuple[str, ...],
    remove_domain: tuple[str, ...],
) -> None:
    """Change one organisation's contract, billing or domains."""

    async def work(gateway: Gateway) -> dict[str, Any]:
        async with gateway.sessions() as session, session.begin():
            org = await get_organisation(session, number)
            domains = await domains_of(session, org)
            changes = {
                "name": name,
                "contract": contract,
                "billing": billing,
                "included_hours": included_hours,
                "submission_fee": submission_fee,
            }
            wanted = [d for d in [*domains, *add_domain] if d not in remove_domain]
            record = OrganisationRecord.model_validate(
                {
                    **organisation_record(org, domains).model_dump(),
                    **{k: v for k, v in changes.items() if v is not None},
                    "domains": list(dict.fromkeys(wanted)),
                }
            )
            await import_organisations(session, [record], utc_now())
            return await organisation_detail(session, org)

    view = _with_gateway(ctx, work)
    click.echo(
        f"{view['number']}: {view['contract']}, {view['billing']}, "
        f"domains {' '.join(view['domains']) or '-'}"
    )


@customers.command("contact")
@click.argument("address")
@click.option("--organisation", "number", help="The customer number the contact belongs to.")
@click.option("--no-organisation", is_flag=True, help="The contact belongs to none.")
@click.option("--name", help="The contact's name.")
@click.option("--language", type=click.Choice(["nl", "en"]), help="Language of notifications.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def customers_contact(
    ctx: click.Context,
    address: str,
    number: str | None,
    no_organisation: bool,
    name: str | None,
    language: str | None,
    as_json: bool,
) -> None:
    """Show a contact, or add or change one (organisation, name, language)."""
    if number and no_organisation:
        raise click.UsageError("give --organisation or --no-organisation, not both")
    address = address.strip().lower()
    changes = number is not None or no_organisation or name is not None or language is not None

    async def work(gateway: Gateway) -> dict[str, Any]:
        async with gateway.sessions() as session, session.begin():
            if changes:
                if number:
                    org = await get_organisation(session, number)
                elif no_organisation:
                    org = None
                else:  # as it was; a new contact: its domain's organisation
                    org = await contact_organisation(session, address)
                await upsert_contact(
                    session, address, utc_now(), organisation=org, name=name or "",
                    language=language,
                )  # fmt: skip
                await session.flush()
            return await contact_view(session, address)

    view = _with_gateway(ctx, work)
    if as_json:
        _print_json(view)
    else:
        org = view["organisation"] or "no organisation"
        click.echo(f"{view['address']}  {view['name'] or '-'}  ({view['language']}), {org}")


EX_DATAERR = 65  # sysexits.h: the message is refused for good (the MTA bounces it)
EX_TEMPFAIL = 75  # sysexits.h: try again later (the MTA keeps the message queued)


class _MtaCommand(click.Command):
    """A command an MTA runs: a usage error exits 75 (try later), never 2, which an MTA
    would take as a permanent failure and bounce the customer's mail."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.show()
            sys.exit(EX_TEMPFAIL)


@main.command(cls=_MtaCommand)
@click.option(
    "--recipient",
    "recipients",
    multiple=True,
    help="Envelope recipient (repeatable), e.g. Postfix ${recipient}; picks the team.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(1024),
    default=25 * 1024 * 1024,
    show_default=True,
    help="Larger messages are quarantined (head only) and refused.",
)
@click.pass_context
def deliver(ctx: click.Context, recipients: tuple[str, ...], max_bytes: int) -> None:
    """Take in one message from standard input (an MTA pipe: Postfix, Exim).

    Exit 0 once it is committed (a ticket, an article, ignored, a duplicate or
    quarantined); 75 (EX_TEMPFAIL) on any failure that may pass (database down, bad
    config), so the MTA keeps the message and retries; 65 when it is over --max-bytes.
    """
    path = resolve_config_path(ctx.obj.get("config_path"))
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"{exc.path}: {problem}", err=True)
        sys.exit(EX_TEMPFAIL)
    configure_logging(settings.logging)
    head, size = _read_bounded(sys.stdin.buffer, max_bytes)

    async def work() -> int:
        gateway = build(settings)
        try:
            await prepare_database(gateway)
            if size > max_bytes:
                await gateway.pipeline.quarantine_oversize(head, size, max_bytes, "deliver")
                click.echo(
                    f"ticket-gateway: message of {size} bytes is over the limit of "
                    f"{max_bytes} bytes",
                    err=True,
                )
                return EX_DATAERR
            outcome = await gateway.pipeline.ingest(head, "deliver", envelope_recipients=recipients)
            click.echo(_outcome_line(outcome))
            return 0
        finally:
            await gateway.close()

    try:
        code = asyncio.run(work())
    except Exception as exc:  # whatever it is, the MTA keeps the message
        click.echo(f"ticket-gateway: temporary failure, not taken in: {exc}", err=True)
        code = EX_TEMPFAIL
    sys.exit(code)


HEAD_BYTES = 64 * 1024  # what is kept of a message over the limit


def _read_bounded(stream: Any, limit: int) -> tuple[bytes, int]:
    """The message if it fits in `limit`, else its first 64 KiB; and its whole size.

    Never holds more than `limit` plus one block in memory.
    """
    data = bytearray()
    size = 0
    while block := stream.read(1 << 16):
        size += len(block)
        if size - len(block) <= limit:  # nothing dropped yet
            data += block
            if size > limit:
                del data[HEAD_BYTES:]
    return bytes(data), size
