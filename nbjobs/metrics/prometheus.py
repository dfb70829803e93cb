"""Prometheus: `JobsCollector` (one SQLite read per scrape), a `registry` holding it, its text
exposition (`prometheus_text`) and a ``/metrics`` server (`serve`).  ``prometheus_client`` loads
when one of them is used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import BadInput
from .inputs import _I, FINAL, _store
from .outcomes import _Outcomes

#: upper bounds (seconds) of the Prometheus histogram buckets
RUNTIME_BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 600, 1800, 3600)


class JobsCollector:
    """A `prometheus_client` collector over the nbjobs database of ``home``: every scrape reads
    SQLite afresh (one query) and reports, per job name (label ``name``):

    - ``nbjobs_jobs_finished_total{name, state}`` (counter): jobs that reached each final state.
      A job retried after failing moves from ``failed`` to its new final state, and pruned jobs
      leave the count; Prometheus treats such a decrease as a counter reset.
    - ``nbjobs_attempts_total{name}`` (counter): attempts started.
    - ``nbjobs_job_runtime_seconds{name}`` (histogram): runtime of finished jobs that ran
      (final end minus first start); buckets `RUNTIME_BUCKETS`.
    - ``nbjobs_job_queue_wait_seconds{name}`` (histogram): first start minus submit of jobs
      that started; buckets `QUEUE_WAIT_BUCKETS`.
    - ``nbjobs_queue_depth{name}``, ``nbjobs_jobs_running{name}``, ``nbjobs_dead_letters{name}``
      (gauges): waiting + queued + retrying jobs, running jobs, unacknowledged dead letters.
    - ``nbjobs_workers`` (gauge): live workers.

    >>> from prometheus_client import CollectorRegistry, generate_latest     # doctest: +SKIP
    >>> registry = CollectorRegistry(auto_describe=False)                      # doctest: +SKIP
    >>> registry.register(JobsCollector())                                     # doctest: +SKIP
    >>> print(generate_latest(registry).decode())                              # doctest: +SKIP
    """

    def __init__(self, home: Path | str | None = None):
        self.home = home

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        store = _store(self.home)  # one Store per thread: the HTTP server scrapes from its own threads
        o = _Outcomes(store, 0.0, "name")
        names = [str(n) for n in o.labels]
        groups = len(names)
        finished = CounterMetricFamily("nbjobs_jobs_finished", "Jobs that reached a final state, by name and state.",
                                       labels=["name", "state"])
        per_state = np.bincount(o.code * 8 + o.state, minlength=groups * 8).reshape(groups, 8)
        for g, name in enumerate(names):
            for s in FINAL:
                finished.add_metric([name, s], float(per_state[g, _I[s]]))
        attempts = CounterMetricFamily("nbjobs_attempts", "Attempts started, by job name.", labels=["name"])
        tried = np.bincount(o.code, weights=o.attempts, minlength=groups)
        for g, name in enumerate(names):
            attempts.add_metric([name], float(tried[g]))
        yield finished
        yield attempts

        ran = o.final & ~np.isnan(o.began)
        yield _histogram(HistogramMetricFamily, "nbjobs_job_runtime_seconds",
                         "Runtime of finished jobs (their last attempt, from its first cell of job code "
                         "to the end), seconds.", names,
                         o.code[ran], (o.finished - o.began)[ran], RUNTIME_BUCKETS)
        began = ~np.isnan(o.started)
        yield _histogram(HistogramMetricFamily, "nbjobs_job_queue_wait_seconds",
                         "Queue wait of started jobs (first start minus submit), seconds.", names,
                         o.code[began], (o.started - o.submitted)[began], QUEUE_WAIT_BUCKETS)

        waiting = np.isin(o.state, [_I["waiting"], _I["queued"], _I["retrying"]])
        dead = np.isin(o.state, [_I["failed"], _I["timed_out"]]) & (o.acked == 0)
        for metric, doc, mask in (
                ("nbjobs_queue_depth", "Jobs waiting to run (waiting, queued, retrying).", waiting),
                ("nbjobs_jobs_running", "Jobs running now.", o.state == _I["running"]),
                ("nbjobs_dead_letters", "Failed or timed-out jobs nobody retried or acknowledged.", dead)):
            gauge = GaugeMetricFamily(metric, doc, labels=["name"])
            values = np.bincount(o.code[mask], minlength=groups)
            for g, name in enumerate(names):
                gauge.add_metric([name], float(values[g]))
            yield gauge
        yield GaugeMetricFamily("nbjobs_workers", "Live workers (heartbeat within one lease period).",
                                value=float(len(store.live_workers())))


def _histogram(family: Any, metric: str, doc: str, names: list[str], codes: np.ndarray, values: np.ndarray,
               bounds: Sequence[float]) -> Any:
    h = family(metric, doc, labels=["name"])
    groups, nb = len(names), len(bounds) + 1
    slot = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")  # value <= le
    counts = np.cumsum(np.bincount(codes * nb + slot, minlength=groups * nb).reshape(groups, nb), axis=1)
    sums = np.bincount(codes, weights=values, minlength=groups)
    les = [_le(b) for b in bounds] + ["+Inf"]
    for g, name in enumerate(names):
        h.add_metric([name], buckets=[(le, float(c)) for le, c in zip(les, counts[g])], sum_value=float(sums[g]))
    return h


def _le(bound: float) -> str:
    return repr(float(bound))


def registry(home: Path | str | None = None) -> Any:
    """A fresh `prometheus_client.CollectorRegistry` holding only a `JobsCollector` (nothing of the
    process's default registry), e.g. to mount in your own web app.

    >>> from prometheus_client import make_wsgi_app                  # doctest: +SKIP
    >>> app = make_wsgi_app(nbjobs.metrics.registry())               # doctest: +SKIP
    """
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(JobsCollector(home))
    return reg


def prometheus_text(home: Path | str | None = None) -> str:
    """The Prometheus text exposition (format 0.0.4) of `JobsCollector`.

    >>> print(nbjobs.metrics.prometheus_text())       # doctest: +SKIP
    # HELP nbjobs_jobs_finished_total Jobs that reached a final state, by name and state.
    # TYPE nbjobs_jobs_finished_total counter
    nbjobs_jobs_finished_total{name="report",state="succeeded"} 140.0
    ...
    """
    from prometheus_client import generate_latest

    return generate_latest(registry(home)).decode()


def serve(port: int = 9464, home: Path | str | None = None) -> Any:
    """Serve ``/metrics`` (`prometheus_text`) over HTTP on 127.0.0.1 only, from a daemon thread.
    ``port=0`` takes a free port; the server's ``server_port`` says which.  Returns the
    server; ``server.shutdown()`` stops it.

    >>> server = nbjobs.metrics.serve(9464)             # doctest: +SKIP
    >>> server.server_port, server.shutdown()           # doctest: +SKIP
    """
    from prometheus_client import start_http_server

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise BadInput(f"port must be a whole number from 0 to 65535, not {port!r}")
    try:
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry(home))
    except OSError as exc:
        raise BadInput(f"cannot serve metrics on 127.0.0.1:{port} ({exc.strerror}); choose another --port") from None
    return server
