"""The ``nbjobs`` command: the verbs of `nbjobs.verbs` (shared with the ``%job`` magics), each
handled by a ``cmd_<verb>`` function here or in cli_flow.py.

Exit codes: 0 ok, 1 a job did not succeed (``run --wait``, ``wait``), 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

from . import api, config, params, text, verbs
from .errors import NbjobsError, WaitTimeout
from .job import State

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


# --- JSON ---------------------------------------------------------------------------------------------
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
        d["outputs"] = [o["name"] for o in job.recorded()]
        d["after"] = job.upstream()
        d["deliveries"] = job.deliveries()
    return d


def _jsonable_outputs(job_id: str) -> dict[str, Any]:
    job = api.get(job_id)
    out: dict[str, Any] = {}
    values = None
    for row in job.recorded():
        if row["kind"] == "json":
            out[row["name"]] = json.loads(row["value"])
        elif row["kind"] == "json-file":
            values = values or api.result(job.id)
            out[row["name"]] = values[row["name"]]
        else:
            folder = config.run_dir(job.id, job.home)
            out[row["name"]] = {"$type": row["type_name"], "$file": str(folder / row["path"])}
    return out


# --- verbs (their arguments and help: nbjobs/verbs.py) --------------------------------------------
def cmd_run(a: argparse.Namespace) -> int:
    if bool(a.notebook) == bool(a.code):
        raise params.BadInput("give either a notebook path or -c CODE (not both); see `nbjobs run --help`")
    api.check_wait_timeout(a.timeout_wait, "--timeout-wait")  # before anything is submitted
    common = verbs.job_kwargs(a)
    job = api.run_notebook(a.notebook, **common) if a.notebook else api.submit(a.code, **common)
    if not a.json:
        print(job.id, flush=True)
    if a.wait:
        return _wait_and_report([job.id], a.timeout_wait, a.json)
    if a.json:
        print(json.dumps(job_json(job.id)))
    return EXIT_OK


def group_json(group: Any) -> dict[str, Any]:
    """One group as a JSON object: id, name, params, size, state, progress, counts per state and its jobs."""
    g = group.record
    counts = group.counts()
    done = sum(n for st, n in counts["states"].items() if State(st).terminal)
    return {"id": group.id, "kind": "group", "name": g["name"], "params": g["params"], "size": g["size"],
            "created_at": g["created_at"], "state": group.state.value, "progress": {"done": done,
                                                                                      "total": counts["total"]},
            "states": counts["states"], "options": g["options"],
            "jobs": [{"id": r.id, "state": r.state.value, "parameters": r.parameters} for r in group.records()]}


def cmd_sweep(a: argparse.Namespace) -> int:
    from .sweeps import sweep

    if bool(a.notebook) == bool(a.code):
        raise params.BadInput("give either a notebook path or -c CODE (not both); see `nbjobs sweep --help`")
    api.check_wait_timeout(a.timeout_wait, "--timeout-wait")  # before anything is submitted
    kw = verbs.sweep_kwargs(a)
    group = sweep(a.notebook, code=a.code, **kw) if a.notebook else sweep(code=a.code, **kw)
    if not a.json:
        print(group.id, flush=True)
    if a.wait:
        return _wait_and_report([j.id for j in group.jobs()], a.timeout_wait, a.json)
    if a.json:
        print(json.dumps(group_json(group)))
    return EXIT_OK


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
            line = f"{r.short_id} {r.name}: {r.state.value} in {text.fmt_duration(text.elapsed(r), precise=True)}"
            if r.error_type:
                line += f" - {r.error_type}: {r.error_message}"
            print(line)
    return EXIT_OK if all(r.state == State.SUCCEEDED for r in recs) else EXIT_FAILED


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise params.BadInput(f"--limit must be 1 or more, not {limit}")


def cmd_ls(a: argparse.Namespace) -> int:
    _check_limit(a.limit)
    recs = api.records(state=a.state or None, name=a.name, tag=a.tag, limit=a.limit, group=a.group)
    if a.json:
        print(json.dumps([job_json(r.id) for r in recs]))
    elif not recs:
        print("no jobs yet; submit one with `nbjobs run NOTEBOOK` or `nbjobs run -c CODE`")
    else:
        print(text.jobs_table(recs))
    if not a.json:
        for note in api.summary()["worker_notes"]:
            print(f"note: {note}")
    return EXIT_OK


def cmd_search(a: argparse.Namespace) -> int:
    _check_limit(a.limit)
    recs = api.search(a.query, limit=a.limit)
    if a.json:
        print(json.dumps([job_json(r.id) for r in recs]))
    elif not recs:
        print(f"no job matches {a.query!r}")
    else:
        print(text.jobs_table(recs))
    return EXIT_OK


def cmd_show(a: argparse.Namespace) -> int:
    found = api.lookup(a.id)
    if isinstance(found, api.Job):
        print(json.dumps(job_json(found.id, full=True), default=str) if a.json else text.job_detail(found))
    else:
        print(json.dumps(group_json(found), default=str) if a.json else text.group_detail(found))
    return EXIT_OK


def cmd_logs(a: argparse.Namespace) -> int:
    job = api.lookup(a.id)
    if not isinstance(job, api.Job):
        if a.follow:
            raise params.BadInput(f"{job.short_id} is a group: -f follows one job; give one of its jobs' IDs "
                                  f"(`nbjobs show {job.short_id}` lists them)")
        sys.stdout.write(text.group_logs(job, a.attempt))
        return EXIT_OK
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
    found = api.lookup(a.id)
    if not isinstance(found, api.Job):
        frame = found.results()
        if a.json:
            print(frame.reset_index().to_json(orient="records", default_handler=str))
        else:
            print(frame.to_string() if len(frame) else "(no jobs)")
        return EXIT_OK
    if a.json:
        print(json.dumps(_jsonable_outputs(a.id)))
        return EXIT_OK
    values = api.result(a.id)
    if not values:
        print("(no recorded outputs)")
    for name, value in values.items():
        print(f"{name} = {value!r}")
    return EXIT_OK


def cmd_compare(a: argparse.Namespace) -> int:
    c = api.compare(a.a, a.b)
    print(json.dumps(c.to_dict(), default=str) if a.json else repr(c))
    return EXIT_OK


def cmd_report(a: argparse.Namespace) -> int:
    print(api.report(a.id, no_input=a.no_input, output=a.output, attempt=a.attempt))
    return EXIT_OK


def cmd_cancel(a: argparse.Namespace) -> int:
    found = [api.lookup(i) for i in a.id]  # an unknown ID among several: nothing is cancelled
    for item in found:
        done = api.cancel(item.id)
        print(text.cancel_line(done))
    return EXIT_OK


def cmd_retry(a: argparse.Namespace) -> int:
    found = [api.lookup(i) for i in a.id]  # an unknown ID among several: nothing is retried
    for item in found:
        api.retry(item.id, start_worker=not a.no_worker)
        print(f"{item.short_id}: queued again" if isinstance(item, api.Job) else
              f"group {item.short_id}: failed, timed-out and cancelled jobs queued again")
    return EXIT_OK


def cmd_wait(a: argparse.Namespace) -> int:
    api.check_wait_timeout(a.timeout, "--timeout")
    found = [api.lookup(i) for i in a.id]
    ids = [j.id for f in found for j in ([f] if isinstance(f, api.Job) else f.jobs())]
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
    print(text.dead_letters_table(recs))
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
    if a.no_warm and a.kernels not in (None, "cold"):
        raise params.BadInput(f"--no-warm means --kernels cold; drop one of --no-warm and --kernels {a.kernels}")
    kernels = "cold" if a.no_warm else a.kernels
    pool = 0 if kernels == "cold" else a.pool
    if pool is not None and not 0 <= pool <= 64:
        raise params.BadInput(f"--pool must be from 0 to 64 warm kernels, not {pool}")
    preload = api.check_preload(a.preload) if a.preload is not None else None
    w = Worker(concurrency=a.concurrency, idle_exit=a.idle_exit, autostarted=a.autostarted,
               grace=a.grace if a.grace is not None else config.STOP_GRACE, pool=pool,
               executor=a.executor, scheduler=a.scheduler, kernels=kernels, preload=preload)
    if not a.autostarted:
        print(text.worker_banner(w), flush=True)
    n = w.run()
    if not a.autostarted:
        print(f"nbjobs worker {w.id}: stopped after {n} attempt(s)", flush=True)
    return EXIT_OK


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(home=a.home)


# --- parser -------------------------------------------------------------------------------------------
def _handler(verb: verbs.Verb):
    """``cmd_<verb>`` of this module or of cli_flow (schedule, notify-default)."""
    name = "cmd_" + verb.func
    if name in globals():
        return globals()[name]
    from . import cli_flow

    return getattr(cli_flow, name)


def parser() -> argparse.ArgumentParser:
    """The ``nbjobs`` parser, built from the verb table (`nbjobs.verbs`)."""
    from . import __version__

    top = argparse.ArgumentParser(
        prog="nbjobs", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run notebooks and notebook cells as durable background jobs.\n"
                    "Jobs live in $NBJOBS_HOME/nbjobs.db (default ~/.nbjobs).",
        epilog="examples:\n  nbjobs run report.ipynb -p n 7 -p title Q3 --wait\n  nbjobs ls\n"
               "  nbjobs show 8f3a2c\n\nexit codes: 0 ok, 1 a job did not succeed, 2 bad input")
    top.add_argument("--version", action="version", version=f"nbjobs {__version__}")
    sub = top.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in verbs.verbs(verbs.CLI):
        p = sub.add_parser(verb.name, aliases=list(verb.aliases), help=verb.help, description=verb.help,
                           epilog=f"example:\n  {verbs.example(verb, verbs.CLI)}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        verbs.build(p, verb, verbs.CLI)
        p.set_defaults(func=_handler(verb))
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
