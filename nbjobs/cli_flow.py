"""The handlers of ``nbjobs schedule ...`` and ``nbjobs notify-default`` (their arguments and help
are in nbjobs/verbs.py; cli.py finds the handlers here by name)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from . import api, params
from .text import backfill_table, schedule_text, schedules_table

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
                             notify_on=a.notify_on, start_worker=not a.no_worker, report=a.report)
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
    elif a.action == "backfill":
        rows = api.schedule_backfill(a.name, a.start, a.end, limit=a.limit, start_worker=not a.no_worker)
        if a.json:
            print(json.dumps([{"slot": b["slot"], "scheduled_for": b["scheduled_for"], "job": b["job"].id,
                               "created": b["created"]} for b in rows]))
        else:
            print(backfill_table(rows))
    return EXIT_OK


def cmd_notify_default(a: argparse.Namespace) -> int:
    d = api.notify_default(a.url, secret_env=a.secret_env, on=a.on, off=a.off)
    if not d["url"]:
        print("no default webhook (jobs notify only with --notify URL)")
    else:
        signed = f"signed with ${d['secret_env']}" if d["secret_env"] else "unsigned"
        print(f"default webhook: {d['url']} (on {d['on']}, {signed})")
    return EXIT_OK
