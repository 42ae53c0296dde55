"""Prometheus series for `/metrics`: requests, latency, the usage ledger, the queue.

Each app gets its own registry so several apps (tests) can live in one process, and
the counters read the same `Usage` ledger that `/v1/solve` and the OpenAI `usage`
field report: one ledger, three views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from server.limits import SearchSlots
    from server.service import SearchRun

#: Route labels are limited to these (anything else is "other"), so a scan of random
#: paths cannot blow up the series count.
KNOWN_ROUTES = frozenset({"/v1/chat/completions", "/v1/solve", "/v1/models", "/health", "/metrics"})
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)


class PonderMetrics:
    """The server's metric series and the two places that feed them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ponder_requests",
            "HTTP requests answered",
            ["route", "strategy", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "ponder_request_duration_seconds",
            "HTTP request latency (to the last byte)",
            ["route", "strategy"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.search_latency = Histogram(
            "ponder_search_duration_seconds",
            "Time spent inside one search",
            ["strategy"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.searches = Counter(
            "ponder_searches", "Searches finished", ["strategy", "stopped_reason"], registry=r
        )
        self.budget_exhausted = Counter(
            "ponder_budget_exhaustions",
            "Searches stopped by their budget",
            ["strategy", "reason"],
            registry=r,
        )
        self.tokens = Counter(
            "ponder_tokens",
            "Tokens spent, by kind (prompt, cached_prompt, generated, reward)",
            ["strategy", "kind"],
            registry=r,
        )
        self.engine_calls = Counter(
            "ponder_engine_calls", "Policy engine calls", ["strategy"], registry=r
        )
        self.reward_calls = Counter(
            "ponder_reward_calls", "Reward backend calls", ["strategy"], registry=r
        )
        self.nodes = Counter(
            "ponder_search_nodes", "Search-tree nodes expanded", ["strategy"], registry=r
        )
        self.queue_depth = Gauge("ponder_queue_depth", "Searches waiting for a slot", registry=r)
        self.active_searches = Gauge(
            "ponder_active_searches", "Searches holding a slot", registry=r
        )
        self.policy_retries = Gauge(
            "ponder_policy_call_retries",
            "Calls to a remote policy sent a second time after a connection or gateway "
            "error, since the server started (a replica behind a router died)",
            registry=r,
        )

    def watch_slots(self, slots: SearchSlots) -> None:
        """Read the queue gauges from `slots` at scrape time (always current)."""
        self.queue_depth.set_function(lambda: slots.queued)
        self.active_searches.set_function(lambda: slots.active)

    def watch_policy(self, policy: object) -> None:
        """Read the remote policy's retry count at scrape time (0 for in-process)."""
        self.policy_retries.set_function(lambda: getattr(policy, "retries", 0))

    def observe_request(self, route: str, strategy: str, status: int, seconds: float) -> None:
        route = route if route in KNOWN_ROUTES else "other"
        self.requests.labels(route, strategy, str(status)).inc()
        self.latency.labels(route, strategy).observe(seconds)

    def observe_search(self, run: SearchRun) -> None:
        strategy, usage = run.strategy, run.result.usage
        reason = run.result.stopped_reason.value
        self.searches.labels(strategy, reason).inc()
        if reason != "completed":
            self.budget_exhausted.labels(strategy, reason).inc()
        self.search_latency.labels(strategy).observe(run.search_s)
        for kind, value in (
            ("prompt", usage.prompt_tokens),
            ("cached_prompt", usage.cached_prompt_tokens),
            ("generated", usage.generated_tokens),
            ("reward", usage.reward_tokens),
        ):
            self.tokens.labels(strategy, kind).inc(value)
        self.engine_calls.labels(strategy).inc(usage.engine_calls)
        self.reward_calls.labels(strategy).inc(usage.reward_calls)
        self.nodes.labels(strategy).inc(usage.nodes)

    def exposition(self) -> tuple[bytes, str]:
        """The scrape body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
