"""Prometheus metrics: one registry per daemon, read at scrape time.

Counters the daemon keeps anyway (the pipeline's outcomes, the relay's totals, the
mailboxes' reconnects) are read as they are; figures that live in the database
(quarantine, outbox, SLA breaches) are queried once per scrape by `refresh()`, before
the registry is rendered (a collector's collect() cannot await).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.observe.probes import (
    OPEN_STATES,
    PROBE_SECONDS,
    DatabaseFigures,
    database_figures,
    probe_database,
)
from gateway.observe.sources import Observed
from gateway.store.db import checkpointer_of

log = logging.getLogger(__name__)

PREFIX = "ticket_gateway_"
OUTCOMES = ("ticket", "article", "ignored", "duplicate", "quarantined")
# Seconds per message: a message takes a few milliseconds; a slow database, seconds.
PROCESSING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayCollector:
    """The daemon's figures, as Prometheus metrics (see README, Observability)."""

    def __init__(self, gateway: Observed, started_at: datetime) -> None:
        self._gateway = gateway
        self._started_at = started_at
        self._figures: DatabaseFigures | None = None
        self._now = started_at
        self._suppressed = 0  # never lower than before: a counter does not go down
        self._failing = False  # the last refresh found no database (logged once)

    async def refresh(self) -> None:
        """Read the database figures for the next collect(); none if it does not answer
        (then database_up is 0, as /healthz would say)."""
        now = self._gateway.relay.clock()
        probe = await probe_database(self._gateway.engine)
        try:
            if not probe.reachable:
                raise ConnectionError(probe.error)
            async with asyncio.timeout(PROBE_SECONDS):
                figures = await database_figures(self._gateway.sessions, now, self._started_at)
        except Exception as exc:  # a scrape must answer even when the database does not
            if not self._failing:
                log.warning("metrics: no database figures: %s", exc)
            self._figures, self._failing = None, True
            return
        self._figures, self._now, self._failing = figures, now, False
        self._suppressed = max(self._suppressed, figures.suppressed)

    def collect(self) -> Iterator[Metric]:
        gateway = self._gateway
        counts = gateway.pipeline.counts
        yield _counters(
            "messages_total",
            "Messages taken in since the daemon started, by outcome.",
            "outcome",
            {outcome: counts.get(outcome, 0) for outcome in sorted({*OUTCOMES, *counts})},
        )
        yield CounterMetricFamily(
            PREFIX + "tickets_created_total",
            "Tickets opened by mail since the daemon started.",
            value=counts.get("ticket", 0),
        )
        totals = gateway.relay_totals
        yield _counters(
            "notifications_total",
            "Notifications since the daemon started: sent and failed by this daemon's relay; "
            "suppressed: held back (rate limit, no automatic answers wanted) in the database.",
            "state",
            {"sent": totals.sent, "failed": totals.failed, "suppressed": self._suppressed},
        )
        yield _counters(
            "imap_reconnects_total",
            "Failed IMAP connections and sessions (each is retried) since the daemon started.",
            "mailbox",
            {mailbox.settings.name: mailbox.health.failures for mailbox in gateway.mailboxes},
        )
        checkpointer = checkpointer_of(gateway.engine)
        if checkpointer is not None:
            yield _counters(
                "sqlite_checkpoints_total",
                "SQLite WAL checkpoints by the daemon's checkpoint thread since it started: "
                "passive, restart (the log started afresh), failed (logged; retried).",
                "result",
                {
                    "passive": checkpointer.passive,
                    "restart": checkpointer.restarts,
                    "failed": checkpointer.failures,
                },
            )
        figures = self._figures
        yield GaugeMetricFamily(
            PREFIX + "database_up",
            "1 when the database answered this scrape (as /healthz checks it), else 0.",
            value=0 if figures is None else 1,
        )
        if figures is None:
            return
        yield GaugeMetricFamily(
            PREFIX + "quarantine_held",
            "Messages held in quarantine (quarantine list).",
            value=figures.quarantine_held,
        )
        depth = GaugeMetricFamily(
            PREFIX + "outbox_depth",
            "Notifications in the outbox by state (all but sent).",
            labels=["state"],
        )
        for state in OPEN_STATES:
            depth.add_metric([state], figures.outbox.by_state[state])
        yield depth
        yield GaugeMetricFamily(
            PREFIX + "outbox_oldest_age_seconds",
            "How long the notification due longest has been waiting to be sent (0: none due).",
            value=figures.outbox.oldest_age_seconds(self._now),
        )
        breaches = GaugeMetricFamily(
            PREFIX + "sla_breaches",
            "Open tickets whose first-response or resolution due time has passed unmet.",
            labels=["kind"],
        )
        for kind, count in sorted(figures.sla_breaches.items()):
            breaches.add_metric([kind], count)
        yield breaches


def _counters(
    name: str, documentation: str, label: str, values: dict[str, float]
) -> CounterMetricFamily:
    """A counter family with one label, a sample per value."""
    family = CounterMetricFamily(PREFIX + name, documentation, labels=[label])
    for value_label, value in values.items():
        family.add_metric([value_label], value)
    return family


class Metrics:
    """A daemon's registry: the processing-time histogram and the collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.processing = Histogram(
            PREFIX + "processing_seconds",
            "Seconds from a message's bytes to its committed transaction (ingest).",
            buckets=PROCESSING_BUCKETS,
            registry=self.registry,
        )
        self._collector: GatewayCollector | None = None

    def watch(self, gateway: Observed, started_at: datetime) -> None:
        """Collect `gateway`'s figures and time its pipeline's messages."""
        self._collector = GatewayCollector(gateway, started_at)
        self.registry.register(self._collector)
        gateway.pipeline.timed = self.processing.observe

    async def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for a scrape (Prometheus text, or OpenMetrics when asked for)
        and its content type."""
        if self._collector is not None:
            await self._collector.refresh()
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
