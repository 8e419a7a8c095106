"""Prometheus metrics, two registries per service (so tests and several apps in a process never clash).

The ingress's families live in ``registry``, the worker's in ``worker_registry``. When the worker runs
in its own process (``BRIDGE_WORKER=process``), that process counts into its own ``worker_registry``
and ``/metrics`` renders the ingress's registry followed by the worker process's (``render(worker=...)``),
so each family appears once.

Labels are reason codes and operation names only: never a repository, a branch or anything secret,
which keeps cardinality bounded and secrets out.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.worker_registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "bridge_deliveries",
            "Webhook deliveries by outcome (accepted, duplicate, ignored, rejected) and reason",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.ingress_seconds = Histogram(
            "bridge_ingress_seconds",
            "Time to answer a webhook delivery, durable commit included",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=self.registry,
        )
        self.sync_calls = Counter(
            "bridge_sync_calls",
            "Chroma Sync API calls by operation and outcome (ok or an error reason)",
            ["operation", "outcome"],
            registry=self.worker_registry,
        )
        self.jobs_finished = Counter(
            "bridge_jobs_finished",
            "Jobs that reached an end state, by state and invocation status",
            ["state", "status"],
            registry=self.worker_registry,
        )
        self.push_to_invocation = Histogram(
            "bridge_push_to_invocation_seconds",
            "From the delivery's arrival to the invocation's creation",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=self.worker_registry,
        )
        self.lane_backoffs = Counter(
            "bridge_lane_backoffs",
            "Creates after which a lane was held past BRIDGE_LANE_MIN_GAP_SECONDS, each create in a row"
            " having cancelled an invocation Sync had not started (Sync is lagging)",
            registry=self.worker_registry,
        )
        self.superseded_on_arrival = Counter(
            "bridge_jobs_superseded_on_arrival",
            "Queued jobs a newer push replaced as it was stored, before any Sync call (the worker's own"
            ' supersedes count in bridge_jobs_finished{state="superseded"})',
            registry=self.registry,
        )
        self.jobs = Gauge("bridge_jobs", "Jobs in the store by state", ["state"], registry=self.registry)
        self.worker_restarts = Counter(
            "bridge_worker_restarts",
            "Times the worker process died and was started again (BRIDGE_WORKER=process)",
            registry=self.registry,
        )
        # SQLite's group commits, counted where the database is written (the worker process, or the
        # serving process with BRIDGE_WORKER=inline or off): the store's share of an answer's time.
        self.store_commit_seconds = Histogram(
            "bridge_store_commit_seconds",
            "SQLite: one group commit, BEGIN to the end of COMMIT (without the WAL's fsync when"
            " bridge_store_sync_seconds counts it)",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.worker_registry,
        )
        self.store_commit_requests = Histogram(
            "bridge_store_commit_requests",
            "SQLite: store requests (accepts, lane claims, reads, updates) sharing one group commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.worker_registry,
        )
        self.store_sync_seconds = Histogram(
            "bridge_store_sync_seconds",
            "SQLite: fdatasync of the WAL that makes group commits durable before they are answered,"
            " from its start to its outcome reaching the event loop (the disk's share of"
            " bridge_ingress_seconds)",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.worker_registry,
        )
        self._delivery_counters: dict[tuple[str, str], Counter] = {}

    def count_delivery(self, outcome: str, reason: str) -> None:
        """``deliveries.labels(outcome, reason).inc()``, with the labelled child looked up once per pair
        (the ingress counts every delivery; ``labels()`` costs more than the increment)."""
        child = self._delivery_counters.get((outcome, reason))
        if child is None:
            child = self._delivery_counters[(outcome, reason)] = self.deliveries.labels(
                outcome=outcome, reason=reason
            )
        child.inc()

    def observe_commit(self, seconds: float, requests: int) -> None:
        self.store_commit_seconds.observe(seconds)
        self.store_commit_requests.observe(requests)

    def set_job_counts(self, counts: Mapping[str, int]) -> None:
        for state, count in counts.items():
            self.jobs.labels(state=state).set(count)

    def render(self, *, worker: bytes | None = None) -> bytes:
        """Prometheus text: the ingress's families, then ``worker`` (the worker process's own
        ``render_worker()``) or, when the worker runs in this process, this process's worker families."""
        return generate_latest(self.registry) + (self.render_worker() if worker is None else worker)

    def render_worker(self) -> bytes:
        return generate_latest(self.worker_registry)
