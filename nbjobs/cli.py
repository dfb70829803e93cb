"""The ``nbjobs`` command: the same verbs as the ``%job`` magics.

Exit codes: 0 ok, 1 a job did not succeed (``run --wait``, ``wait``), 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import api, params, policy
from .errors import NbjobsError, WaitTimeout
from .job import JobRecord, State

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


# --- formatting -------------------------------------------------------------------------------------
def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    t = time.localtime(ts)
    if time.strftime("%Y-%m-%d", t) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%Y-%m-%d %H:%M", t)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def elapsed(r: JobRecord) -> float | None:
    if r.started_at is None:
        return None
    return (r.finished_at or time.time()) - r.started_at


def table(records: Sequence[JobRecord]) -> str:
    """The ``nbjobs ls`` table."""
    head = ("ID", "NAME", "STATE", "ATTEMPTS", "QUEUED", "STARTED", "DURATION")
    rows = [head]
    for r in records:
        state = r.state.value + (f" ({r.reason})" if r.reason and r.state.terminal and r.reason != r.state.value
                                 and r.state != State.SUCCEEDED else "")
        if r.state == State.RUNNING and r.progress_total:
            state += f" {r.progress_done}/{r.progress_total}"
        if r.state == State.RETRYING and r.run_at:
            state += f" (in {fmt_duration(max(0.0, r.run_at - time.time()))})"
        rows.append((r.short_id, r.name[:30], state, f"{r.attempts}/{r.max_attempts}", fmt_time(r.submitted_at),
                     fmt_time(r.started_at), fmt_duration(elapsed(r))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def job_json(job_id: str, full: bool = False) -> dict[str, Any]:
    """One job as a JSON object: ``id``, ``state``, ``attempts`` (a count) and ``error`` at least."""
    job = api.get(job_id)
    r = job.record
    d = r.to_dict()
    d["error"] = ({"type": r.error_type, "message": r.error_message, "cell": r.error_cell}
                  if r.error_type else None)
    for k in ("error_type", "error_message", "error_cell", "error_traceback", "source"):
        d.pop(k, None)
    d["progress"] = {"done": r.progress_done, "total": r.progress_total}
    d.pop("progress_done"), d.pop("progress_total")
    if full:
        d["source"] = r.source
        d["error_traceback"] = r.error_traceback
        d["attempt_history"] = job.attempts()
        d["events"] = job.events()
        d["outputs"] = [o["name"] for o in job._store.outputs(r.id)]
        d["after"] = job._store.upstream(r.id)
        d["deliveries"] = job._store.deliveries(r.id)
    return d


def show_text(job_id: str) -> str:
    job = api.get(job_id)
    r = job.record
    lines = [f"id:         {r.id}", f"name:       {r.name}",
             f"state:      {r.state.value}" + (f" ({r.reason})" if r.reason else "")]
    if r.cancel_requested and r.state == State.RUNNING:
        lines[-1] += " - cancel requested"
    what = r.notebook if r.kind == "notebook" else (r.source or "").strip().splitlines()[0][:70] + " ..."
    lines += [f"kind:       {r.kind}: {what}", f"kernel:     {r.kernel}", f"cwd:        {r.cwd}"]
    if r.parameters:
        lines.append(f"parameters: {json.dumps(r.parameters)}")
    if r.tags:
        lines.append(f"tags:       {', '.join(r.tags)}")
    infra = f" ({r.infra_failures} lost to infrastructure, not charged to the job)" if r.infra_failures else ""
    lines += [f"priority:   {r.priority}", f"attempts:   {r.attempts} of {r.max_attempts}{infra}",
              f"submitted:  {fmt_time(r.submitted_at)} by {r.submitted_by}",
              f"started:    {fmt_time(r.started_at)}", f"finished:   {fmt_time(r.finished_at)}",
              f"duration:   {fmt_duration(elapsed(r))}"]
    if r.progress_total:
        lines.append(f"progress:   {r.progress_done}/{r.progress_total} cells")
    if r.idem_key:
        lines.append(f"key:        {r.idem_key}")
    if r.output_path:
        lines.append(f"notebook:   {r.output_path}")
    if r.state == State.RETRYING and r.run_at:
        lines.append(f"next try:   {fmt_time(r.run_at)} (in {fmt_duration(max(0.0, r.run_at - time.time()))})")
    if r.options.get("secrets"):
        lines.append(f"secrets:    {', '.join(r.options['secrets'])} (names only; values are never stored)")
    if r.error_type:
        cell = f" (cell {r.error_cell})" if r.error_cell is not None else ""
        lines.append(f"error:      {r.error_type}: {r.error_message}{cell}")
    if r.dead_letter:
        lines.append("dead letter: yes (`nbjobs retry` re-drives it, `nbjobs dlq ack` files it away)")
    elif r.acked_at and r.state in (State.FAILED, State.TIMED_OUT):
        lines.append(f"dead letter: acknowledged {fmt_time(r.acked_at)} (kept; `nbjobs retry` re-drives it)")
    attempts = job.attempts()
    if attempts:
        lines.append("attempt history:")
        for a in attempts:
            dur = fmt_duration(a["finished_at"] - a["started_at"]) if a["finished_at"] else "-"
            kernel = (f", kernel pid {a['kernel_pid']} ({'warm' if a.get('kernel_warm') else 'cold'})"
                      if a.get("kernel_pid") else "")
            why = f"\n        {a['error_type']}: {a['error_message']}" if a["outcome"] in policy.INFRA else ""
            lines.append(f"  #{a['number']}  {a['outcome']:<12} {fmt_time(a['started_at'])}  {dur:>7}  "
                         f"worker {a['worker_id']}{kernel}"
                         f"{' [infrastructure: re-queued, not charged]' if a['outcome'] in policy.INFRA else ''}{why}")
    outs = job._store.outputs(r.id)
    if outs:
        lines.append("outputs:    " + ", ".join(f"{o['name']} ({o['kind']})" for o in outs))
    lines += _flow_lines(job)
    lines.append("events:")
    for e in job.events():
        lines.append(f"  {fmt_time(e['at'])}  {(e['from_state'] or '-'):>9} -> {e['to_state']:<9}  "
                     f"{e['reason'] or ''}  [{e['actor']}]")
    return "\n".join(lines)


def _flow_lines(job: api.Job) -> list[str]:
    """Dependencies, schedule and webhook deliveries of a job, for `show`."""
    store, r, lines = job._store, job.record, []
    up, down = store.upstream(r.id), store.downstream(r.id)
    if up:
        lines.append(f"after:      {', '.join(u[:8] for u in up)}" + (" (any ending)" if r.options.get("after_any") else ""))
    if down:
        lines.append(f"before:     {', '.join(d[:8] for d in down)}")
    if r.options.get("schedule"):
        lines.append(f"schedule:   {r.options['schedule']}" + (f" (slot {fmt_time(r.options['slot'])})"
                                                               if r.options.get("slot") else " (run-now)"))
    deliveries = store.deliveries(r.id)
    if deliveries:
        from .notify import display_url

        lines.append("deliveries:")
        for d in deliveries:
            last = f"HTTP {d['last_status']}" if d["last_status"] else ""
            err = f"  last error: {d['last_error']}" if d["last_error"] and d["state"] != "delivered" else ""
            lines.append(f"  {d['id'][:8]}  job.{d['event']:<10} {d['state']:<9} {d['attempts']} attempt(s) "
                         f"{last}  {display_url(d['url'])}{err}")
    return lines


def _jsonable_outputs(job_id: str) -> dict[str, Any]:
    job = api.get(job_id)
    store = job._store
    out: dict[str, Any] = {}
    values = None
    for row in store.outputs(job.id):
        if row["kind"] == "json":
            out[row["name"]] = json.loads(row["value"])
        elif row["kind"] == "json-file":
            values = values or api.result(job.id)
            out[row["name"]] = values[row["name"]]
        else:
            folder = Path(store.path.parent) / "runs" / job.id
            out[row["name"]] = {"$type": row["type_name"], "$file": str(folder / row["path"])}
    return out


# --- verbs -------------------------------------------------------------------------------------------
def _job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="a name for the job (default: the notebook's name or the code's first line)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter, typed like papermill's -p (int, float, bool, None or string)")
    p.add_argument("-r", "--raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter kept as a raw string")
    p.add_argument("-y", "--yaml", action="append", default=[], metavar="YAML",
                   help="parameters as a YAML mapping, e.g. -y '{n: 7, title: Q3}'")
    p.add_argument("-f", "--parameters-file", action="append", default=[], metavar="FILE",
                   help="a YAML file of parameters")
    p.add_argument("--kernel", help="kernel to run in (default: the notebook's kernel, python3 for code)")
    p.add_argument("--cwd", help="working directory of the job (default: the current directory)")
    p.add_argument("--retries", type=int, default=0, help="retries after a failed attempt (default 0)")
    p.add_argument("--timeout", type=float, help="whole-job timeout in seconds")
    p.add_argument("--cell-timeout", type=float, help="per-cell timeout in seconds, passed to papermill")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    p.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    p.add_argument("--key", help="idempotency key: a second submit with the same key returns the first job")
    p.add_argument("--retry-on", metavar="KINDS",
                   help="which failures retry: any of error,timeout,lost (default all; kernel death is an error)")
    p.add_argument("--infra-retries", type=int, metavar="N",
                   help="re-queues after attempts lost to the system (worker, runner or kernel lost before the "
                        "job's code ran), not charged to --retries (default: the home's setting, else 3)")
    p.add_argument("--backoff-base", type=float, metavar="S", help="first retry delay ceiling in seconds (default 1)")
    p.add_argument("--backoff-factor", type=float, metavar="F", help="delay growth per retry (default 2)")
    p.add_argument("--backoff-cap", type=float, metavar="S", help="largest retry delay in seconds (default 300)")
    p.add_argument("--jitter", choices=("full", "none"), help="full jitter (default) or exact delays")
    p.add_argument("--secret", action="append", default=[], metavar="NAME",
                   help="pass the worker's environment variable NAME to the job; its value is never stored "
                        "and is redacted from logs and output notebooks (repeatable)")
    p.add_argument("--after", action="append", default=[], metavar="ID[,ID...]",
                   help="wait (state waiting) until these jobs succeeded; cancelled (dependency_failed) if one fails")
    p.add_argument("--after-any", action="store_true", help="with --after: run once they all ended, however")
    p.add_argument("--notify", metavar="URL", help="POST a JSON body to this http(s) URL when the job ends")
    p.add_argument("--notify-on", choices=("end", "all"), help="end (final states, default) or all state changes")
    p.add_argument("--wait", action="store_true", help="wait for the job to end; exit 0 if it succeeded, else 1")
    p.add_argument("--timeout-wait", type=float, metavar="S", help="with --wait: give up after S seconds")
    p.add_argument("--no-worker", action="store_true", help="do not start a background worker")
    p.add_argument("--json", action="store_true", help="print the job as one JSON object")


def cmd_run(a: argparse.Namespace) -> int:
    if bool(a.notebook) == bool(a.code):
        raise params.BadInput("give either a notebook path or -c CODE (not both); see `nbjobs run --help`")
    api.check_wait_timeout(a.timeout_wait, "--timeout-wait")  # before anything is submitted
    parameters = params.build(p=a.parameter, r=a.raw, y=a.yaml, f=a.parameters_file)
    common = dict(name=a.name, parameters=parameters, kernel=a.kernel, cwd=a.cwd, retries=a.retries,
                  timeout=a.timeout, priority=a.priority, tags=a.tag, key=a.key, cell_timeout=a.cell_timeout,
                  start_worker=not a.no_worker, secrets=a.secret, retry_on=a.retry_on, backoff=_backoff(a),
                  after=a.after or None, after_any=a.after_any, notify=a.notify, notify_on=a.notify_on,
                  infra_retries=a.infra_retries)
    job = api.run_notebook(a.notebook, **common) if a.notebook else api.submit(a.code, **common)
    if not a.json:
        print(job.id, flush=True)
    if a.wait:
        return _wait_and_report([job.id], a.timeout_wait, a.json)
    if a.json:
        print(json.dumps(job_json(job.id)))
    return EXIT_OK


def _backoff(a: argparse.Namespace) -> dict[str, Any] | None:
    given = {k: v for k, v in (("base", a.backoff_base), ("factor", a.backoff_factor), ("cap", a.backoff_cap),
                               ("jitter", a.jitter)) if v is not None}
    return given or None


def _wait_and_report(ids: list[str], timeout: float | None, as_json: bool) -> int:
    try:
        jobs = api.wait(ids, timeout=timeout)
    except WaitTimeout as exc:
        if as_json:
            print(json.dumps([job_json(i) for i in ids] if len(ids) > 1 else job_json(ids[0])))
        print(f"nbjobs: {exc}", file=sys.stderr)
        return EXIT_FAILED
    recs = [j.record for j in jobs]
    if as_json:
        objs = [job_json(r.id) for r in recs]
        print(json.dumps(objs if len(objs) > 1 else objs[0]))
    else:
        for r in recs:
            line = f"{r.short_id} {r.name}: {r.state.value} in {fmt_duration(elapsed(r))}"
            if r.error_type:
                line += f" - {r.error_type}: {r.error_message}"
            print(line)
    return EXIT_OK if all(r.state == State.SUCCEEDED for r in recs) else EXIT_FAILED


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise params.BadInput(f"--limit must be 1 or more, not {limit}")


def cmd_ls(a: argparse.Namespace) -> int:
    _check_limit(a.limit)
    recs = api.records(state=a.state or None, name=a.name, tag=a.tag, limit=a.limit)
    if a.json:
        print(json.dumps([job_json(r.id) for r in recs]))
    elif not recs:
        print("no jobs yet; submit one with `nbjobs run NOTEBOOK` or `nbjobs run -c CODE`")
    else:
        print(table(recs))
    if not a.json:
        for note in api._store().summary()["worker_notes"]:
            print(f"note: {note}")
    return EXIT_OK


def cmd_show(a: argparse.Namespace) -> int:
    print(json.dumps(job_json(a.id, full=True), default=str) if a.json else show_text(a.id))
    return EXIT_OK


def cmd_logs(a: argparse.Namespace) -> int:
    job = api.get(a.id)
    if not a.follow:
        sys.stdout.write(job.logs(a.attempt))
        return EXIT_OK
    shown: dict[str, int] = {}
    current = None
    while True:
        path = api.log_path(job.id, a.attempt)
        if path is not None and path != current:
            if current is not None:
                print(f"\n--- {path.parent.name and 'attempt ' + path.parent.name} ---", flush=True)
            current = path
        final = job.state.terminal
        if current is not None and current.exists():
            with open(current, "rb") as f:
                f.seek(shown.get(str(current), 0))
                data = f.read()
            if data:
                shown[str(current)] = shown.get(str(current), 0) + len(data)
                sys.stdout.write(data.decode(errors="replace"))
                sys.stdout.flush()
                continue
        if final:
            return EXIT_OK
        time.sleep(0.2)


def cmd_result(a: argparse.Namespace) -> int:
    if a.json:
        print(json.dumps(_jsonable_outputs(a.id)))
        return EXIT_OK
    values = api.result(a.id)
    if not values:
        print("(no recorded outputs)")
    for name, value in values.items():
        print(f"{name} = {value!r}")
    return EXIT_OK


def cmd_cancel(a: argparse.Namespace) -> int:
    a.id = [api.get(i).id for i in a.id]  # an unknown ID among several: nothing is cancelled
    for i in a.id:
        job = api.cancel(i)
        state = job.state
        print(f"{job.short_id}: {'cancelled' if state == State.CANCELLED else 'cancel requested (stopping)'}")
    return EXIT_OK


def cmd_retry(a: argparse.Namespace) -> int:
    a.id = [api.get(i).id for i in a.id]  # an unknown ID among several: nothing is retried
    for i in a.id:
        job = api.retry(i, start_worker=not a.no_worker)
        print(f"{job.short_id}: queued again")
    return EXIT_OK


def cmd_wait(a: argparse.Namespace) -> int:
    api.check_wait_timeout(a.timeout, "--timeout")
    ids = [api.get(i).id for i in a.id]
    return _wait_and_report(ids, a.timeout, a.json)


def cmd_dlq(a: argparse.Namespace) -> int:
    if a.action == "ack":
        if not a.id:
            raise params.BadInput("give the job ID(s) to acknowledge: nbjobs dlq ack ID [ID ...]")
        for job in api.ack(a.id):  # all or none
            print(f"{job.short_id}: acknowledged")
        return EXIT_OK
    if a.id:
        raise params.BadInput(f"`nbjobs dlq {a.action}` takes no job IDs; did you mean `nbjobs dlq ack ID`?")
    if a.action == "purge":
        ids = api.prune(a.older_than or "0.001s", dead_letters_only=True, dry_run=a.dry_run,
                        states=["failed", "timed_out"])
        print(f"{'would purge' if a.dry_run else 'purged'} {len(ids)} dead letter(s)")
        return EXIT_OK
    _check_limit(a.limit)
    recs = api.dead_letters(a.limit)
    if a.json:
        print(json.dumps([job_json(r.id) for r in recs]))
        return EXIT_OK
    if not recs:
        print("no dead letters")
        return EXIT_OK
    rows = [("ID", "NAME", "STATE", "REASON", "ATTEMPTS", "FINISHED", "LAST ERROR")]
    for r in recs:
        err = f"{r.error_type}: {r.error_message}" if r.error_type else "-"
        rows.append((r.short_id, r.name[:30], r.state.value, r.reason or "-", str(r.attempts),
                     fmt_time(r.finished_at), err.splitlines()[0][:70]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows))
    return EXIT_OK


def cmd_prune(a: argparse.Namespace) -> int:
    ids = api.prune(a.older_than, states=a.state, dry_run=a.dry_run)
    if a.json:
        print(json.dumps({"pruned": ids, "dry_run": a.dry_run}))
    else:
        print(f"{'would prune' if a.dry_run else 'pruned'} {len(ids)} job(s) finished more than {a.older_than} ago")
    return EXIT_OK


def cmd_retention(a: argparse.Namespace) -> int:
    if a.value == "off":
        api.retention(off=True)
    elif a.value is not None:
        api.retention(a.value)
    value = api.retention()
    print(f"retention: {value}" if value else "retention: off (finished jobs are kept until `nbjobs prune`)")
    return EXIT_OK


def cmd_metrics(a: argparse.Namespace) -> int:
    from . import metrics  # pandas loads here, never for the other verbs

    if a.serve:
        import signal

        server = metrics.serve(a.port)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_OK))
        print(f"nbjobs metrics: serving Prometheus metrics on http://127.0.0.1:{server.server_port}/metrics; "
              "Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return EXIT_OK
        finally:
            server.shutdown()
    if a.format == "prometheus":
        sys.stdout.write(metrics.prometheus_text())
        return EXIT_OK
    frame = metrics.sli(window=a.window, by=None if a.by == "none" else a.by, freq=a.freq)
    if a.format == "csv":
        sys.stdout.write(frame.to_csv())
    elif a.format == "json":
        print(frame.reset_index().to_json(orient="records", date_format="iso"))
    elif frame.empty:
        print(f"no finished or waiting jobs in the last {a.window}")
    else:
        print(frame.to_string(float_format=lambda v: f"{v:.4g}"))
    return EXIT_OK


def cmd_worker(a: argparse.Namespace) -> int:
    from .worker import Worker

    if a.concurrency is not None and not 1 <= a.concurrency <= 256:
        raise params.BadInput(f"--concurrency must be from 1 to 256, not {a.concurrency}")
    for flag, value in (("--grace", a.grace), ("--idle-exit", a.idle_exit)):
        if value is not None and not 0 <= value <= api.MAX_TIMEOUT:  # also false for nan
            raise params.BadInput(f"{flag} must be a number of seconds from 0 to {api.MAX_TIMEOUT:.0f}, not {value}")
    pool = 0 if a.no_warm else a.pool
    if pool is not None and not 0 <= pool <= 64:
        raise params.BadInput(f"--pool must be from 0 to 64 warm kernels, not {pool}")
    w = Worker(concurrency=a.concurrency, idle_exit=a.idle_exit, autostarted=a.autostarted,
               grace=a.grace if a.grace is not None else api.config.STOP_GRACE, pool=pool,
               executor=a.executor, scheduler=a.scheduler)
    if not a.autostarted:
        where = w.executor.name
        if getattr(w.executor, "dashboard_link", None):
            where += f" (dashboard {w.executor.dashboard_link})"
        warm = getattr(w.executor, "pool", None)
        print(f"nbjobs worker {w.id}: home {w.home}, executor {where}, concurrency {w.concurrency}"
              + (f", {warm} warm kernel(s)" if warm is not None else "") + "; Ctrl-C stops it", flush=True)
    n = w.run()
    if not a.autostarted:
        print(f"nbjobs worker {w.id}: stopped after {n} attempt(s)", flush=True)
    return EXIT_OK


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(home=a.home)


# --- parser -------------------------------------------------------------------------------------------
def _add(sub, name: str, func, help: str, example: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="nbjobs", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run notebooks and notebook cells as durable background jobs.\n"
                    "Jobs live in $NBJOBS_HOME/nbjobs.db (default ~/.nbjobs).",
        epilog="examples:\n  nbjobs run report.ipynb -p n 7 -p title Q3 --wait\n  nbjobs ls\n"
               "  nbjobs show 8f3a2c\n\nexit codes: 0 ok, 1 a job did not succeed, 2 bad input")
    from . import __version__

    top.add_argument("--version", action="version", version=f"nbjobs {__version__}")
    sub = top.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    p = _add(sub, "run", cmd_run, "submit a notebook (or -c CODE) as a job and print its ID",
             'nbjobs run report.ipynb -p n 7 -p title "Q3" --wait\n  '
             "nbjobs run -c \"import nbjobs; nbjobs.record('answer', 6*7)\" --name quick")
    p.add_argument("notebook", nargs="?", help="the notebook to run")
    p.add_argument("-c", "--code", help="Python source to run as a cell job instead of a notebook")
    _job_options(p)

    p = _add(sub, "ls", cmd_ls, "list recent jobs, newest first", "nbjobs ls --state failed --limit 50")
    p.add_argument("--state", action="append", help="only jobs in this state (repeatable)")
    p.add_argument("--name", help="only jobs with this name (glob patterns like 'train*' work)")
    p.add_argument("--tag", help="only jobs with this tag")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = _add(sub, "show", cmd_show, "show one job: state, attempts, error, outputs, events",
             "nbjobs show 8f3a2c --json")
    p.add_argument("id", help="job ID or unique prefix")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = _add(sub, "logs", cmd_logs, "print a job's captured output", "nbjobs logs 8f3a2c -f")
    p.add_argument("id", help="job ID or unique prefix")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    p.add_argument("--attempt", type=int, help="attempt number (default: the latest)")

    p = _add(sub, "result", cmd_result, "print a job's recorded outputs", "nbjobs result 8f3a2c --json")
    p.add_argument("id", help="job ID or unique prefix")
    p.add_argument("--json", action="store_true",
                   help="one JSON object; values stored as files appear as {\"$type\", \"$file\"}")

    p = _add(sub, "cancel", cmd_cancel, "cancel jobs (a running job's kernel is stopped)", "nbjobs cancel 8f3a2c")
    p.add_argument("id", nargs="+", help="job ID(s) or unique prefix(es)")

    p = _add(sub, "retry", cmd_retry, "run failed, timed-out or cancelled jobs again under the same ID",
             "nbjobs retry 8f3a2c")
    p.add_argument("id", nargs="+", help="job ID(s) or unique prefix(es)")
    p.add_argument("--no-worker", action="store_true", help="do not start a background worker")

    p = _add(sub, "wait", cmd_wait, "wait for jobs to end; exit 0 if all succeeded, else 1",
             "nbjobs wait 8f3a2c 91bc04 --timeout 600")
    p.add_argument("id", nargs="+", help="job ID(s) or unique prefix(es)")
    p.add_argument("--timeout", type=float, help="give up after this many seconds (exit 1)")
    p.add_argument("--json", action="store_true", help="print the job(s) as JSON")

    p = _add(sub, "dlq", cmd_dlq, "list dead letters (failed or timed-out jobs with no retry left); ack or purge them",
             "nbjobs dlq\n  nbjobs retry 8f3a2c            # re-drive one\n  nbjobs dlq ack 8f3a2c\n"
             "  nbjobs dlq purge --older-than 7d")
    p.add_argument("action", nargs="?", choices=("ls", "ack", "purge"), default="ls",
                   help="ls (default), ack ID..., or purge")
    p.add_argument("id", nargs="*", help="job ID(s) for ack")
    p.add_argument("--older-than", metavar="DURATION", help="purge: only dead letters finished before (e.g. 7d)")
    p.add_argument("--dry-run", action="store_true", help="purge: only say how many")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = _add(sub, "prune", cmd_prune, "remove finished jobs older than a duration (records and run folders)",
             "nbjobs prune --older-than 30d --state succeeded --state cancelled")
    p.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h, 90m, 45s, 2w")
    p.add_argument("--state", action="append", help="only jobs in this final state (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.add_argument("--json", action="store_true", help="print the pruned IDs as JSON")

    p = _add(sub, "retention", cmd_retention, "show or set the default retention that workers apply",
             "nbjobs retention 30d\n  nbjobs retention off")
    p.add_argument("value", nargs="?", help="a duration such as 30d, or 'off'")

    p = _add(sub, "metrics", cmd_metrics, "print service-level indicators per job name, or Prometheus metrics",
             "nbjobs metrics --window 24h\n  nbjobs metrics --by none --freq 1h\n"
             "  nbjobs metrics --format prometheus\n  nbjobs metrics --serve --port 9464")
    p.add_argument("--window", default="7D", metavar="DURATION", help="how far back to look (default 7D; e.g. 24h, 30D)")
    p.add_argument("--by", default="name", choices=("name", "kind", "priority", "none"),
                   help="one row per job name (default), kind, priority, or none (all jobs together)")
    p.add_argument("--freq", metavar="DURATION", help="also one row per time bucket of this size (e.g. 1h, 1D)")
    p.add_argument("--format", default="table", choices=("table", "csv", "json", "prometheus"),
                   help="table (default), csv, json (a list of rows), or the Prometheus text exposition")
    p.add_argument("--serve", action="store_true",
                   help="serve the Prometheus metrics at http://127.0.0.1:PORT/metrics (this machine only) until Ctrl-C")
    p.add_argument("--port", type=int, default=9464, help="port for --serve (default 9464; 0 picks a free one)")

    p = _add(sub, "worker", cmd_worker, "run a worker in the foreground; Ctrl-C stops it cleanly",
             "nbjobs worker --concurrency 2 --pool 4\n"
             "  nbjobs worker --executor dask --scheduler tcp://scheduler.example.org:8786")
    p.add_argument("--concurrency", type=int,
                   help="jobs run at once (default 1; with --executor dask, the cluster's threads)")
    p.add_argument("--pool", type=int, metavar="N", help="kernels kept started ahead of need, each used by one job "
                   "only (default: one per --concurrency slot; env NBJOBS_POOL_SIZE; local executor)")
    p.add_argument("--no-warm", action="store_true", help="start every job's kernel when the job starts (the cold "
                   "path; same as --pool 0)")
    p.add_argument("--executor", choices=("local", "dask"),
                   help="where jobs run: local processes or a Dask cluster (default $NBJOBS_EXECUTOR or local)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="the Dask scheduler, e.g. tcp://host:8786 (default $NBJOBS_SCHEDULER; none: a "
                        "LocalCluster sized to this machine)")
    p.add_argument("--idle-exit", type=float, help="exit after this many idle seconds (default: never)")
    p.add_argument("--grace", type=float, help="seconds running jobs get to finish when stopping (default 10)")
    p.add_argument("--autostarted", action="store_true", help=argparse.SUPPRESS)

    p = _add(sub, "demo", cmd_demo, "submit a few demo jobs, run them, print the table",
             "nbjobs demo")
    p.add_argument("--home", help="nbjobs home for the demo (default: a new temporary folder)")

    from .cli_flow import add_verbs  # schedule, notify-default

    add_verbs(sub, _add)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nbjobs`` console script."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except NbjobsError as exc:
        print(f"nbjobs: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
