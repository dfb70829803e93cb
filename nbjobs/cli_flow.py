"""The ``nbjobs schedule ...`` and ``nbjobs notify-default`` verbs (kept out of cli.py, which
only registers them with `add_verbs`)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from . import api, params
from .schedule import schedule_text, schedules_table

EXIT_OK = 0


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "spec"} | {"spec": {k: v for k, v in d["spec"].items()
                                                                  if k != "source"}}


def cmd_schedule(a: argparse.Namespace) -> int:
    if a.action == "add":
        if bool(a.notebook) == bool(a.code):
            raise params.BadInput("give either a notebook path or -c CODE for the schedule's job (not both)")
        parameters = params.build(p=a.parameter, r=a.raw, y=a.yaml, f=a.parameters_file)
        d = api.schedule_add(a.name, a.cron, a.notebook, parameters, code=a.code, tz=a.tz, misfire=a.misfire,
                             misfire_cap=a.misfire_cap, overlap=a.overlap, job_name=a.job_name, kernel=a.kernel,
                             cwd=a.cwd, retries=a.retries, timeout=a.timeout, tags=a.tag, notify=a.notify,
                             notify_on=a.notify_on, start_worker=not a.no_worker)
        print(json.dumps(_jsonable(d), default=str) if a.json else
              f"schedule {d['name']} added; next: {', '.join(d['next_local'])}")
        return EXIT_OK
    if a.action == "ls":
        rows = api.schedules()
        if a.json:
            print(json.dumps([_jsonable(d) for d in rows], default=str))
        elif not rows:
            print('no schedules; add one with `nbjobs schedule add NAME "CRON" NOTEBOOK`')
        else:
            print(schedules_table(rows))
        return EXIT_OK
    if a.action == "show":
        d = api.schedule_show(a.name)
        print(json.dumps(_jsonable(d), default=str) if a.json else schedule_text(d))
        return EXIT_OK
    if a.action == "pause":
        api.schedule_pause(a.name)
        print(f"schedule {a.name} paused")
    elif a.action == "resume":
        d = api.schedule_resume(a.name)
        print(f"schedule {a.name} resumed; next: {', '.join(d['next_local'])}")
    elif a.action == "rm":
        api.schedule_rm(a.name)
        print(f"schedule {a.name} removed (the jobs it fired stay)")
    elif a.action == "run-now":
        job = api.schedule_run_now(a.name, start_worker=not a.no_worker)
        print(job.id)
    return EXIT_OK


def cmd_notify_default(a: argparse.Namespace) -> int:
    d = api.notify_default(a.url, secret_env=a.secret_env, on=a.on, off=a.off)
    if not d["url"]:
        print("no default webhook (jobs notify only with --notify URL)")
    else:
        signed = f"signed with ${d['secret_env']}" if d["secret_env"] else "unsigned"
        print(f"default webhook: {d['url']} (on {d['on']}, {signed})")
    return EXIT_OK


def add_verbs(sub, add) -> None:
    """Register ``schedule`` and ``notify-default`` on the ``nbjobs`` parser (``add`` is cli._add)."""
    p = add(sub, "schedule", cmd_schedule, "cron schedules: add, ls, show, pause, resume, rm, run-now",
            'nbjobs schedule add daily-report "30 6 * * 1-5" report.ipynb -p n 7 --tz Europe/Berlin\n  '
            "nbjobs schedule ls\n  nbjobs schedule show daily-report\n  nbjobs schedule run-now daily-report\n  "
            "nbjobs schedule pause daily-report; nbjobs schedule resume daily-report; nbjobs schedule rm daily-report")
    ss = p.add_subparsers(dest="action", metavar="ACTION")
    ss.required = True
    q = add(ss, "add", cmd_schedule, "add a schedule: each fire submits the notebook (or -c CODE) as a job",
            'nbjobs schedule add nightly "@daily" etl.ipynb --misfire all --misfire-cap 3 --overlap queue')
    q.add_argument("name", help="schedule name (letters, digits, - _ .)")
    q.add_argument("cron", help="5 cron fields (minute hour day month weekday) or @hourly/@daily/@weekly/...")
    q.add_argument("notebook", nargs="?", help="the notebook each fire runs")
    q.add_argument("-c", "--code", help="Python source to run as a cell job instead of a notebook")
    q.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter, typed like papermill's -p")
    q.add_argument("-r", "--raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter kept as a raw string")
    q.add_argument("-y", "--yaml", action="append", default=[], metavar="YAML", help="parameters as YAML")
    q.add_argument("-f", "--parameters-file", action="append", default=[], metavar="FILE",
                   help="a YAML file of parameters")
    q.add_argument("--tz", default="UTC", help="IANA time zone of the cron fields (default UTC), e.g. Europe/Berlin")
    q.add_argument("--misfire", default="once", help="after downtime: skip, once (default: one run for the "
                                                     "missed slots) or all (each missed slot, up to --misfire-cap)")
    q.add_argument("--misfire-cap", type=int, default=10, help="most missed slots run with --misfire all (default 10)")
    q.add_argument("--overlap", default="skip", help="when the previous fire is still active: skip (default), "
                                                     "queue (run after it) or allow")
    q.add_argument("--job-name", help="name of the fired jobs (default: the schedule's name)")
    q.add_argument("--kernel", help="kernel to run in")
    q.add_argument("--cwd", help="working directory of the jobs (default: the current directory)")
    q.add_argument("--retries", type=int, default=0, help="retries of each fired job (default 0)")
    q.add_argument("--timeout", type=float, help="whole-job timeout in seconds")
    q.add_argument("--tag", action="append", default=[], help="a tag of the fired jobs (repeatable)")
    q.add_argument("--notify", metavar="URL", help="POST a JSON body to this http(s) URL when a fired job ends")
    q.add_argument("--notify-on", choices=("end", "all"), help="end (final states, default) or all state changes")
    q.add_argument("--no-worker", action="store_true", help="do not start a background worker")
    q.add_argument("--json", action="store_true", help="print the schedule as JSON")
    q = add(ss, "ls", cmd_schedule, "list schedules with their next three run times", "nbjobs schedule ls --json")
    q.add_argument("--json", action="store_true", help="print a JSON list")
    for action, help, example in (("show", "one schedule: settings, next runs, recent decisions",
                                   "nbjobs schedule show daily-report"),
                                  ("pause", "stop firing (slots of the pause never run)", "nbjobs schedule pause daily-report"),
                                  ("resume", "fire again from now on", "nbjobs schedule resume daily-report"),
                                  ("rm", "remove a schedule (its jobs stay)", "nbjobs schedule rm daily-report"),
                                  ("run-now", "submit one job of the schedule now and print its ID",
                                   "nbjobs schedule run-now daily-report")):
        q = add(ss, action, cmd_schedule, help, example)
        q.add_argument("name", help="schedule name")
        if action == "show":
            q.add_argument("--json", action="store_true", help="print one JSON object")
        if action == "run-now":
            q.add_argument("--no-worker", action="store_true", help="do not start a background worker")

    p = add(sub, "notify-default", cmd_notify_default,
            "show or set the home's default webhook, POSTed when any job ends",
            "nbjobs notify-default https://hooks.example.com/nbjobs --secret-env NBJOBS_WEBHOOK_SECRET\n  "
            "nbjobs notify-default --off")
    p.add_argument("url", nargs="?", help="http(s) URL")
    p.add_argument("--secret-env", metavar="NAME", help="environment variable (of the worker) holding the HMAC "
                                                         "signing secret; the value is never stored")
    p.add_argument("--on", choices=("end", "all"), help="end (final states, default) or all state changes")
    p.add_argument("--off", action="store_true", help="remove the default webhook")
