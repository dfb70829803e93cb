"""Notifications: webhooks on job state changes (``on_done`` callbacks: see `nbjobs.api.submit`).

**Webhooks.**  A job submitted with ``notify=URL`` (``--notify URL``), or any job of a home with a
default webhook (``nbjobs notify-default URL``), gets a JSON POST when it ends (``notify_on="all"``:
on every state change; ``notify_on="failure"``: only when it failed or timed out, i.e. became a dead
letter; the choice is `policy.notify_wanted`), and a ``job.slow`` POST when a running attempt is
flagged slow (it ran past its name's usual runtime, `policy.slow_threshold`; once per attempt;
``job.slow_after`` is the threshold in seconds).  The row to send is written to the ``outbox`` table *in the same SQLite
transaction* that records the state change (a transactional outbox), so no ending is lost and
none is announced that did not happen.  Workers deliver due rows (`deliver_due`): at least once,
retried with exponential backoff and full jitter (`policy.backoff`) until a 2xx answer or
`MAX_ATTEMPTS`; every row has a unique delivery id, the same on each retry, so a receiver can
drop duplicates.  Attempts and the last error show in ``nbjobs show``.

The body (`build_body`)::

    {"delivery_id": "...", "event": "job.succeeded", "sent_at": 1732480000.0,
     "job": {"id", "name", "kind", "state", "reason", "attempts", "max_attempts", "submitted_at",
             "started_at", "finished_at", "duration", "error": {"type", "message"} | null,
             "tags", "schedule", "at"}}

It never carries parameters, inputs, sources or tracebacks (secret values stay out by
construction).  Headers: ``X-Nbjobs-Delivery`` (the delivery id), ``X-Nbjobs-Attempt``,
``X-Nbjobs-Event`` and, when a signing secret is configured (``nbjobs notify-default URL
--secret-env NAME``: the *name* of an environment variable of the worker, never the value),
``X-Nbjobs-Signature: sha256=HEX``, the HMAC-SHA256 of the raw body with that secret.

>>> sign(b'{"a": 1}', "s3cret")
'sha256=1a9fab6cd4b8cdcaad8640f3eca73fa924c62ff24f3833254ef3547232153767'
>>> check_url("ftp://example.com/hook")
Traceback (most recent call last):
...
nbjobs.errors.BadInput: webhook URL 'ftp://example.com/hook' must start with http:// or https://
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any

from .errors import BadInput

#: delivery attempts before a webhook row is given up (state ``failed``)
MAX_ATTEMPTS = int(os.environ.get("NBJOBS_NOTIFY_ATTEMPTS", "8"))
#: backoff base (seconds) between delivery attempts; doubles each time, capped at `BACKOFF_CAP`
BACKOFF_BASE = float(os.environ.get("NBJOBS_NOTIFY_BACKOFF", "2"))
BACKOFF_CAP = 600.0
#: seconds one POST may take
TIMEOUT = 10.0
USER_AGENT = "nbjobs-webhook/1"


def check_url(url: Any) -> str:
    """A usable http(s) webhook URL, or `BadInput` saying what is wrong.

    >>> check_url("http://127.0.0.1:8000/hook")
    'http://127.0.0.1:8000/hook'
    """
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url.strip():
        raise BadInput("give the webhook as an http(s) URL, like https://hooks.example.com/nbjobs")
    text = url.strip()
    if any(ord(c) <= 32 or ord(c) == 127 for c in text):
        raise BadInput(f"webhook URL {url!r} contains spaces or control characters; percent-encode them")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise BadInput(f"webhook URL {url!r} is malformed ({exc}); write it like https://host/path") from None
    if parts.scheme not in ("http", "https"):
        raise BadInput(f"webhook URL {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise BadInput(f"webhook URL {url!r} has no host; write it like https://host/path")
    del port
    return text


def display_url(url: str) -> str:
    """The URL without credentials or query (which often carry tokens), for tables and logs.

    >>> display_url("https://user:pw@hooks.example.com/T0/B1?token=abc")
    'https://hooks.example.com/T0/B1?…'
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(malformed URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?…" if parts.query else "")


def check_env_name(name: Any) -> str:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise BadInput(f"{name!r} is not an environment variable name; name the variable that holds the "
                       "signing secret (e.g. --secret-env NBJOBS_WEBHOOK_SECRET), never the secret itself")
    return name


def build_body(row: dict[str, Any]) -> bytes:
    """The JSON body of one outbox row (``id``, ``event`` and the job snapshot in ``body``)."""
    job = json.loads(row["body"])
    error = None
    if job.get("error_type") or job.get("error_message"):
        error = {"type": job.get("error_type"), "message": (job.get("error_message") or "")[:1000]}
    started, finished = job.get("started_at"), job.get("finished_at")
    snapshot = {k: job.get(k) for k in ("id", "name", "kind", "state", "reason", "attempts", "max_attempts",
                                        "submitted_at", "started_at", "finished_at")}
    snapshot.update(duration=(finished - started) if started and finished else None, error=error,
                    tags=job.get("tags") or [], schedule=job.get("schedule"), at=job.get("at"))
    if row["event"] == "slow":  # a running attempt past its name's usual runtime (seconds)
        snapshot["slow_after"] = job.get("slow_after")
    body = {"delivery_id": row["id"], "event": f"job.{row['event']}", "sent_at": row["created_at"],
            "job": snapshot}
    return json.dumps(body, sort_keys=True).encode()


def sign(body: bytes, secret: str) -> str:
    """``sha256=HEX``: HMAC-SHA256 of ``body`` keyed with ``secret``.  A receiver checks it with
    ``hmac.compare_digest(sign(raw_body, secret), request.headers["X-Nbjobs-Signature"])``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
    """POST ``body``; returns ``(status, error)`` (error None for a 2xx answer)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http(s) only, checked)
            status = resp.status
            resp.read(65536)
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}"


def deliver_one(store, row: dict[str, Any], secret_env: str | None = None, now: float | None = None) -> bool:
    """Send one claimed outbox row and record the attempt (delivered / retry later / failed).
    Returns True when it was delivered."""
    from . import policy

    body = build_body(row)
    headers = {"X-Nbjobs-Delivery": row["id"], "X-Nbjobs-Attempt": str(row["attempts"]),
               "X-Nbjobs-Event": f"job.{row['event']}"}
    status, error = None, None
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            error = f"signing secret ${secret_env} is not set in the worker's environment; not sent"
        else:
            headers["X-Nbjobs-Signature"] = sign(body, secret)
    if error is None:
        status, error = post(row["url"], body, headers)
    now = time.time() if now is None else now
    if error is None:
        store.delivery_result(row["id"], ok=True, status=status, now=now)
        return True
    retry_at = None
    if row["attempts"] < MAX_ATTEMPTS:
        retry_at = now + max(0.05, policy.backoff(row["attempts"], base=BACKOFF_BASE, factor=2.0, cap=BACKOFF_CAP))
    store.delivery_result(row["id"], ok=False, status=status, error=error, retry_at=retry_at, now=now)
    return False


def deliver_due(store, now: float | None = None, limit: int = 20, budget: float = 2.0) -> int:
    """Deliver the due outbox rows of a home (each claimed first, so two workers never send the
    same attempt).  Returns how many were delivered.  Workers call this about 4 times a second;
    a round stops starting new POSTs after ``budget`` seconds, so slow receivers never hold up
    the schedule firer that shares the worker's background thread for more than one `TIMEOUT`."""
    secret_env = store.get_setting("notify_secret_env")
    delivered = 0
    started = time.monotonic()
    for row in store.due_deliveries(now, limit):
        if time.monotonic() - started > budget:
            break
        claimed = store.claim_delivery(row["id"], hold=TIMEOUT + 30, now=now)
        if claimed is not None:
            delivered += deliver_one(store, claimed, secret_env, now)
    return delivered


__all__ = ["check_url", "display_url", "build_body", "sign", "post", "deliver_one", "deliver_due"]
