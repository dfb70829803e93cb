"""The Python API every front end uses: submit, look up, wait, read results, cancel, retry.

>>> import nbjobs
>>> job = nbjobs.submit("import nbjobs; nbjobs.record('answer', 6 * 7)", name="quick")  # doctest: +SKIP
>>> job.wait(60).result()                                                               # doctest: +SKIP
{'answer': 42}

One module per concern, each name defined once and re-exported here (``nbjobs.api.submit``,
``from nbjobs.api import Job``):

- `handle`: the `Job` handle, and ``_store(home)``, the one way the API opens a home's store
- `checks`: argument checks (``BadInput`` in one line) and the limits (``MAX_TIMEOUT``...)
- `specs`: a job's spec from a submit's arguments (options, dependencies, limits, report)
- `submitting`: `submit`, `run_notebook`, `ensure_worker`, ``on_done`` callbacks
- `queries`: `get`, `lookup`, `jobs`, `records`, `search`, `wait`, `result`, `logs`, `summary`, ...
- `actions`: `cancel`, `retry`, `worker`
- `housekeeping`: dead letters (`dead_letters`, `ack`), `prune`, `retention`, `infra_retries`
- `scheduling`: `schedule_add` and the other ``schedule_*`` functions, `schedules`
- `webhooks`: `notify_default`, `deliveries`
- `reporting`: `compare`, `report`
"""
from __future__ import annotations

from .actions import cancel, retry, worker
from .checks import MAX_PRIORITY, MAX_RETRIES, MAX_RUNNING, MAX_TIMEOUT, check_preload, check_wait_timeout
from .handle import Job
from .housekeeping import RETENTION_SETTING, ack, dead_letters, infra_retries, prune, retention
from .queries import (db, get, jobs, log_path, logs, lookup, own_kernel, records, result, search, summary, wait,
                      waiting_reasons, workers)
from .reporting import compare, report
from .scheduling import (schedule_add, schedule_backfill, schedule_pause, schedule_resume, schedule_rm,
                         schedule_run_now, schedule_show, schedules)
from .submitting import ensure_worker, run_notebook, submit
from .webhooks import deliveries, notify_default

__all__ = ["Job", "submit", "run_notebook", "ensure_worker", "get", "jobs", "records", "lookup", "waiting_reasons",
           "search", "db", "own_kernel", "workers", "summary", "wait", "result", "logs", "log_path", "cancel",
           "retry", "worker", "check_preload", "check_wait_timeout", "dead_letters", "ack", "prune", "retention",
           "infra_retries", "schedule_add", "schedules", "schedule_show", "schedule_pause", "schedule_resume",
           "schedule_rm", "schedule_run_now", "schedule_backfill", "notify_default", "deliveries", "compare",
           "report", "MAX_RETRIES", "MAX_TIMEOUT", "MAX_PRIORITY", "MAX_RUNNING", "RETENTION_SETTING"]
