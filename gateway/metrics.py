"""Prometheus metrics, one CollectorRegistry per app (two apps in one test process never collide)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# Handling is a few milliseconds when warm; the tail that matters is WeChat's 5 s passive deadline.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 10.0)


class Metrics:
    """The gateway's counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._handled: dict[tuple[str, str | None], tuple[Any, Any, Any, Any]] = {}
        self.messages_in = Counter(
            "kefu_messages_in", "Inbound customer messages handled", ["channel"], registry=self.registry
        )
        self.messages_out = Counter(
            "kefu_messages_out", "Bot replies produced", ["channel"], registry=self.registry
        )
        self.duplicates = Counter(
            "kefu_messages_duplicate",
            "Platform retries answered from the stored replies",
            ["channel"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "kefu_decisions", "Decisions on inbound messages", ["channel", "decision"], registry=self.registry
        )
        self.latency = Histogram(
            "kefu_handle_seconds",
            "Time to handle one inbound message (store + classify + reply)",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_length = Gauge(
            "kefu_queue_length", "Conversations waiting for a human agent", registry=self.registry
        )
        self.outbox = Gauge("kefu_outbox_rows", "Outbox rows by status", ["status"], registry=self.registry)
        self.sends = Counter(
            "kefu_outbox_sends",
            "Outbox send attempts by outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.outbox_doubles = Counter(
            "kefu_outbox_possible_doubles",
            "Sends that may have reached the customer twice: resumed after an expired lease, or sent but "
            "not recorded as sent",
            ["channel", "cause"],
            registry=self.registry,
        )
        self.outbox_failing = Gauge(
            "kefu_outbox_failing_rows",
            "Outbox rows that exhausted their fast retries and are retried on the slow schedule",
            registry=self.registry,
        )
        self.kb_reloads = Counter(
            "kefu_kb_reloads",
            "Knowledge-base reload attempts by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.handoff_steps_behind = Gauge(
            "kefu_handoff_steps_behind",
            "Conversations whose handoff step still runs after their webhook was answered",
            registry=self.registry,
        )
        self.kb_entries = Gauge(
            "kefu_kb_entries", "FAQ entries in the current knowledge base", registry=self.registry
        )

    def observe_handled(
        self, channel: str, decision: str | None, replies: int, seconds: float, *, duplicate: bool
    ) -> None:
        """Count one handled inbound message."""
        if duplicate:
            self.duplicates.labels(channel).inc()
            return
        children = self._handled.get((channel, decision))
        if children is None:  # labels() takes a lock and hashes the label values: once per combination
            children = self._handled[(channel, decision)] = (
                self.messages_in.labels(channel),
                self.messages_out.labels(channel),
                self.decisions.labels(channel, decision or "none"),
                self.latency.labels(channel),
            )
        messages_in, messages_out, decisions, latency = children
        messages_in.inc()
        if replies:
            messages_out.inc(replies)
        decisions.inc()
        latency.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
