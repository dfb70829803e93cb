"""``%%job`` and ``%job``: run notebook cells and notebooks as background jobs, from IPython.

    %load_ext nbjobs

    %%job --name train --in df,params --out model,score --retries 2 --timeout 600
    model = fit(df, **params)
    score = evaluate(model)

The cell returns at once with a `nbjobs.Job` handle, shown under the cell as its receipt (live
while the job runs, see `nbjobs.panel`); ``job = _`` keeps it.  ``%job VERB`` has the verbs of
the ``nbjobs`` command: ``run ls status logs result pull wait cancel retry help``.

Loading is light: this module imports only IPython's magic machinery; the API, pandas,
papermill, ipywidgets and sqlite-utils load when a magic first needs them.

>>> from IPython.core.interactiveshell import InteractiveShell   # doctest: +SKIP
>>> ip = InteractiveShell.instance(); ip.run_line_magic("load_ext", "nbjobs")   # doctest: +SKIP
>>> job = ip.run_cell_magic("job", "--out x --no-worker", "x = 6 * 7")   # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import html
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser, argument, kwds, magic_arguments
from IPython.utils.process import arg_split

# --- options shared by %%job and %job run ---------------------------------------------------------
_PARAM_OPTIONS = [
    (("-p", "--parameter"), dict(nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                                 help="a parameter, typed like papermill's -p (int, float, bool, None or str); "
                                      "repeatable")),
    (("-r", "--raw"), dict(nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                           help="a parameter kept as a raw string")),
    (("-y", "--yaml"), dict(action="append", default=[], metavar="YAML",
                            help="parameters as a YAML mapping, e.g. -y '{n: 7, title: Q3}'")),
    (("-f", "--parameters-file"), dict(action="append", default=[], metavar="FILE",
                                       help="a YAML file of parameters")),
]
_JOB_OPTIONS = [
    (("--name",), dict(help="a name for the job (default: the first line of code / the notebook's name)")),
    (("--retries",), dict(type=int, default=0, metavar="N", help="retries after a failed attempt (default 0)")),
    (("--timeout",), dict(type=float, metavar="S", help="whole-job timeout in seconds")),
    (("--cell-timeout",), dict(type=float, metavar="S", help="per-cell timeout in seconds (papermill's)")),
    (("--key",), dict(metavar="K", help="idempotency key: a second submit with the same key returns the first job")),
    (("--priority",), dict(type=int, default=0, metavar="P", help="higher runs first (default 0)")),
    (("--tag",), dict(action="append", default=[], metavar="T", help="a tag (repeatable)")),
    (("--kernel",), dict(metavar="NAME", help="kernel to run in (default: this kernel's own kernelspec for "
                                              "%%%%job, the notebook's for %%job run)")),
    (("--cwd",), dict(metavar="DIR", help="working directory of the job (default: this kernel's current "
                                          "directory, which Jupyter sets to the notebook's folder)")),
    (("--retry-on",), dict(metavar="KINDS", help="which failures retry: any of error,timeout,lost (default all)")),
    (("--infra-retries",), dict(type=int, metavar="N", help="re-queues after attempts lost to the system, not "
                                                         "charged to --retries (default: the home's setting, else 3)")),
    (("--backoff-base",), dict(type=float, metavar="S", help="first retry delay ceiling in seconds (default 1)")),
    (("--backoff-factor",), dict(type=float, metavar="F", help="retry delay growth (default 2)")),
    (("--backoff-cap",), dict(type=float, metavar="S", help="largest retry delay in seconds (default 300)")),
    (("--jitter",), dict(choices=("full", "none"), help="full jitter (default) or exact delays")),
    (("--secret",), dict(action="append", default=[], metavar="NAME",
                         help="pass the worker's environment variable NAME; never stored, redacted from logs "
                              "and output notebooks (repeatable)")),
    (("--after",), dict(action="append", default=[], metavar="ID[,ID]",
                        help="wait until these jobs succeeded (a failed one cancels this job: dependency_failed)")),
    (("--after-any",), dict(action="store_true", help="with --after: run once they all ended, however")),
    (("--notify",), dict(metavar="URL", help="POST a JSON body to this http(s) URL when the job ends")),
    (("--notify-on",), dict(choices=("end", "all"), help="end (final states, default) or all state changes")),
    (("--wait",), dict(action="store_true", help="block until the job ends, then show its result")),
    (("--quiet",), dict(action="store_true", help="show nothing; the cell has no value")),
    (("--no-worker",), dict(action="store_true", help="do not start a background worker if none is alive")),
]
_IO_OPTIONS = [
    (("--in",), dict(dest="inputs", action="append", default=[], metavar="A,B",
                     help="variables copied by value (cloudpickle) from this namespace into the job")),
    (("--out",), dict(dest="outputs", action="append", default=[], metavar="X,Y",
                      help="variables recorded when the cell has run; read them back with job.result() "
                           "or %%job pull ID")),
]


def _add_options(parser: argparse.ArgumentParser, options) -> argparse.ArgumentParser:
    """Add (flags, kwargs) pairs to an argparse parser."""
    for flags, kw in options:
        parser.add_argument(*flags, **kw)
    return parser


def _arguments(options):
    """The same (flags, kwargs) pairs as `magic_arguments.argument` decorators, in order."""
    def deco(func):
        for flags, kw in reversed(options):
            func = argument(*flags, **kw)(func)
        return func
    return deco


CELL_EXAMPLES = """\
examples:
  %%job --name train --in df,params --out model,score --retries 2 --timeout 600
  model = fit(df, **params)
  score = evaluate(model)

  job = _                  # the handle: job.id, job.state, job.wait(60), job.result(), job.logs(), job.cancel()
  %job pull 8f3a2c         # later, even after a kernel restart: model and score are variables again

  %%job -p n 1000 --wait   # n = 1000 in the job; block, then show the result
  import math; total = sum(math.sqrt(i) for i in range(n))
  nbjobs.record("total", total)

Inputs travel by value (cloudpickle: DataFrames, arrays, functions and lambdas work); the job
sees them as ordinary variables.  --out names are recorded when the cell has run; one the cell
never defined fails the job.  The job runs in a fresh kernel with this kernel's working directory;
line magics and !shell lines work in it.  Jobs live in $NBJOBS_HOME (default ~/.nbjobs)."""

VERBS = {
    "run": ("NOTEBOOK [-p NAME VALUE]... [options]", "submit a notebook job (papermill); returns the handle",
            "%job run report.ipynb -p n 10 --retries 1"),
    "ls": ("[--state S] [--name N] [--tag T] [--limit N]", "recent jobs, newest first (a list of handles)",
           "%job ls --state failed"),
    "status": ("[ID]", "one job in detail; without ID: counts per state and workers", "%job status 8f3a2c"),
    "logs": ("ID [--attempt N]", "captured stdout/stderr of the latest (or given) attempt", "%job logs 8f3a2c"),
    "result": ("ID", "the recorded outputs as a dict, same types as recorded", "res = %job result 8f3a2c"),
    "pull": ("ID [NAME...]", "put recorded outputs into this namespace under their names",
             "%job pull 8f3a2c model score"),
    "wait": ("ID... [--timeout S]", "block until the job(s) end; returns the handle", "%job wait 8f3a2c --timeout 600"),
    "cancel": ("ID...", "cancel jobs (a running job's kernel is stopped)", "%job cancel 8f3a2c"),
    "retry": ("ID... [--no-worker]", "run a failed, timed-out or cancelled job again, same ID", "%job retry 8f3a2c"),
    "dlq": ("[ls | ack ID... | purge [--older-than D]]", "dead letters: failed or timed-out jobs with no retry left",
            "%job dlq"),
    "prune": ("--older-than D [--state S]... [--dry-run]", "remove finished jobs older than D (e.g. 30d)",
              "%job prune --older-than 30d --state succeeded"),
    "panel": ("[--state S] [--name N] [--tag T] [--limit N]",
              "a live table of recent jobs (counts, progress, actions) that updates itself",
              "%job panel --state active"),
    "metrics": ("[--window 7D] [--by name|kind|priority|none] [--freq 1h]",
                "service-level indicators (a DataFrame): runs, success rate, runtime percentiles, queue depth",
                "%job metrics --window 24h --freq 1h"),
    "schedule": ("add NAME CRON NOTEBOOK|-c CODE [options] | ls | show NAME | pause NAME | resume NAME | rm NAME "
                 "| run-now NAME", "cron schedules: each fire submits the notebook (or code) as an ordinary job",
                 '%job schedule add daily "30 6 * * 1-5" report.ipynb -p n 7 --tz Europe/Berlin'),
    "help": ("[VERB]", "this list, or one verb's options", "%job help run"),
}


def verbs_help() -> str:
    """The ``%job help`` text: every verb with its arguments and an example."""
    lines = ["%job VERB [ARGS]   (the verbs of the `nbjobs` command)", ""]
    for verb, (usage, what, example) in VERBS.items():
        lines.append(f"  %job {verb} {usage}")
        lines.append(f"      {what}")
        lines.append(f"      e.g. {example}")
    lines += ["", "An ID is any unique prefix of a job ID, as in git.  {expr} in the line expands Python",
              "values: %job wait {job.id}.  Cell jobs: %%job [options] (see %%job?)."]
    return "\n".join(lines)


def _verb_parsers() -> dict[str, MagicArgumentParser]:
    def make(verb: str) -> MagicArgumentParser:
        usage, what, example = VERBS[verb]
        return MagicArgumentParser(prog=f"%job {verb}", description=what, epilog=f"example:\n  {example}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    out = {}
    p = out["run"] = make("run")
    p.add_argument("notebook", help="the notebook to run")
    _add_options(p, _PARAM_OPTIONS + _JOB_OPTIONS)
    p = out["ls"] = make("ls")
    p.add_argument("--state", action="append", default=[], help="only jobs in this state (repeatable)")
    p.add_argument("--name", help="only jobs with this name (globs like 'train*' work)")
    p.add_argument("--tag", help="only jobs with this tag")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p = out["status"] = make("status")
    p.add_argument("id", nargs="?", help="job ID or unique prefix")
    p = out["logs"] = make("logs")
    p.add_argument("id", help="job ID or unique prefix")
    p.add_argument("--attempt", type=int, help="attempt number (default: the latest)")
    p = out["result"] = make("result")
    p.add_argument("id", help="job ID or unique prefix")
    p = out["pull"] = make("pull")
    p.add_argument("id", help="job ID or unique prefix")
    p.add_argument("names", nargs="*", help="outputs to pull (default: all)")
    p = out["wait"] = make("wait")
    p.add_argument("id", nargs="+", help="job ID(s) or unique prefix(es)")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
    p = out["cancel"] = make("cancel")
    p.add_argument("id", nargs="+", help="job ID(s) or unique prefix(es)")
    p = out["retry"] = make("retry")
    p.add_argument("id", nargs="+", help="job ID(s) or unique prefix(es)")
    p.add_argument("--no-worker", action="store_true", help="do not start a background worker")
    p = out["dlq"] = make("dlq")
    p.add_argument("action", nargs="?", choices=("ls", "ack", "purge"), default="ls", help="ls, ack or purge")
    p.add_argument("id", nargs="*", help="job ID(s) for ack")
    p.add_argument("--older-than", metavar="D", help="purge: only dead letters finished before (e.g. 7d)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p = out["prune"] = make("prune")
    p.add_argument("--older-than", required=True, metavar="D", help="e.g. 30d, 12h, 90m, 45s, 2w")
    p.add_argument("--state", action="append", help="only jobs in this final state (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    p = out["panel"] = make("panel")
    p.add_argument("--state", default=None, help="all (default), active, a state, or several: failed,timed_out")
    p.add_argument("--name", help="only jobs with this name (globs like 'train*' work)")
    p.add_argument("--tag", help="only jobs with this tag")
    p.add_argument("--limit", type=int, default=20, help="at most this many rows (default 20)")
    p = out["metrics"] = make("metrics")
    p.add_argument("--window", default="7D", help="how far back to look (default 7D; e.g. 24h, 30D)")
    p.add_argument("--by", default="name", choices=("name", "kind", "priority", "none"), help="group rows by")
    p.add_argument("--freq", help="also one row per time bucket of this size (e.g. 1h)")
    p = out["schedule"] = make("schedule")
    p.add_argument("action", choices=("add", "ls", "show", "pause", "resume", "rm", "run-now"), help="what to do")
    p.add_argument("name", nargs="?", help="schedule name")
    p.add_argument("cron", nargs="?", help="add: 5 cron fields or @daily/@hourly/...")
    p.add_argument("notebook", nargs="?", help="add: the notebook each fire runs")
    p.add_argument("-c", "--code", help="add: Python source to run as a cell job instead of a notebook")
    _add_options(p, _PARAM_OPTIONS)
    p.add_argument("--tz", default="UTC", help="IANA time zone of the cron fields (default UTC)")
    p.add_argument("--misfire", default="once", help="after downtime: skip, once (default) or all")
    p.add_argument("--misfire-cap", type=int, default=10, help="most missed slots run with --misfire all")
    p.add_argument("--overlap", default="skip", help="previous fire still active: skip (default), queue or allow")
    p.add_argument("--job-name", help="name of the fired jobs (default: the schedule's)")
    p.add_argument("--retries", type=int, default=0, help="retries of each fired job")
    p.add_argument("--timeout", type=float, help="whole-job timeout in seconds")
    p.add_argument("--notify", metavar="URL", help="POST a JSON body here when a fired job ends")
    p.add_argument("--no-worker", action="store_true", help="do not start a background worker")
    p = out["help"] = make("help")
    p.add_argument("verb", nargs="?", help="a verb")
    return out


_PARSERS = _verb_parsers()
LINE_DOC = (verbs_help() + "\n\nThe verbs in detail:\n\n"
            + "\n".join(p.format_help() for verb, p in _PARSERS.items() if verb != "help"))


def _doc(text: str):
    def deco(func):
        func.__doc__ = text
        return func
    return deco


# --- errors ------------------------------------------------------------------------------------------
def _magic_words(message: str) -> str:
    """Say errors in the notebook's words: ``%job ls`` instead of ``nbjobs ls``, ``--in`` for inputs."""
    message = message.replace("`nbjobs show", "`%job status").replace("`nbjobs ", "`%job ")
    if message.startswith("input '"):
        message = "--in " + message[len("input "):]
    elif message.startswith("output name "):
        message = "--out " + message[len("output "):]
    elif message.startswith("input name "):
        message = "--in " + message[len("input "):]
    return message


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """nbjobs' own errors become a UsageError: IPython shows one line, no traceback."""
    from .errors import NbjobsError

    try:
        yield
    except NbjobsError as exc:
        raise UsageError(_magic_words(str(exc))) from None


def _reliability(a) -> dict[str, Any]:
    """The retry, backoff and secret options of %%job / %job run as `api.submit` keywords."""
    backoff = {k: v for k, v in (("base", a.backoff_base), ("factor", a.backoff_factor), ("cap", a.backoff_cap),
                                 ("jitter", a.jitter)) if v is not None}
    return {"retry_on": a.retry_on, "infra_retries": a.infra_retries, "backoff": backoff or None, "secrets": a.secret,
            "after": _split(a.after) or None, "after_any": a.after_any, "notify": a.notify, "notify_on": a.notify_on}


def _argv(line: str) -> list[str]:
    """Split a magic's line as a shell would, as ``%run`` does: quotes group words and are removed
    (``--name "Q3 report"`` is ``Q3 report``, ``--key ''`` is empty), so a value means the same as
    in the ``nbjobs`` command.  An unclosed quote is one line, not a traceback."""
    try:
        return arg_split(line, posix=os.name == "posix")
    except ValueError as exc:
        raise UsageError(f"cannot read the options: {exc}; close the quote") from None


class DeadLetters(list):
    """What ``%job dlq`` returns: the dead letters' `Job` handles, shown as a table with each
    job's reason and last error (text in a terminal, HTML in a notebook)."""

    _HEAD = ("ID", "NAME", "STATE", "REASON", "ATTEMPTS", "LAST ERROR")

    def __init__(self, records=()):
        from .api import Job

        super().__init__(Job(r.id) for r in records)
        self.records = list(records)

    def _rows(self) -> list[tuple[str, ...]]:
        out = []
        for r in self.records:
            err = f"{r.error_type}: {r.error_message}" if r.error_type else "-"
            out.append((r.short_id, r.name[:30], r.state.value, r.reason or "-", str(r.attempts),
                        (err.splitlines() or ["-"])[0][:70]))
        return out

    def __repr__(self) -> str:
        if not self.records:
            return "no dead letters"
        rows = [self._HEAD, *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEAD))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)

    def _repr_html_(self) -> str:
        if not self.records:
            return "<p>no dead letters</p>"
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in self._HEAD)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self._rows())
        return f"<table class='nbjobs-dlq'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Text(str):
    """A string shown as itself (no quotes) as a cell's value."""

    def __repr__(self) -> str:
        return str(self)


def _split(values: list[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (``--in a,b --in c``)."""
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


# --- the magics --------------------------------------------------------------------------------------
@magics_class
class JobMagics(Magics):
    """``%%job`` (a cell as a job) and ``%job VERB`` (the CLI's verbs)."""

    @magic_arguments(name="%job")
    @kwds(epilog=CELL_EXAMPLES)
    @_arguments(_IO_OPTIONS + _PARAM_OPTIONS + _JOB_OPTIONS)
    @_doc("Run this cell as a background job in a fresh kernel; the cell returns its handle at once.\n\n"
          "The handle (nbjobs.Job) is the cell's value, shown as a receipt that updates live until\n"
          "the job ends: `job = _` keeps it.  Everything about the job lives in SQLite, so its\n"
          "outputs can be read back after a kernel restart (%job pull ID).")
    @cell_magic("job")
    def job_cell(self, line: str, cell: str) -> Any:
        args = self.job_cell.parser.parse_args(_argv(line))
        if not cell.strip():
            raise UsageError("%%job needs code below its first line: the cell to run as a job")
        with _one_line_errors():
            from . import api, params
            from .kernels import kernel_for_python

            inputs = self._inputs(_split(args.inputs))
            job = api.submit(
                cell, name=args.name, parameters=params.build(p=args.parameter, r=args.raw, y=args.yaml,
                                                              f=args.parameters_file),
                kernel=args.kernel or kernel_for_python(), cwd=args.cwd, retries=args.retries,
                timeout=args.timeout, priority=args.priority, tags=args.tag, key=args.key,
                cell_timeout=args.cell_timeout, start_worker=not args.no_worker, inputs=inputs,
                outputs=_split(args.outputs), **_reliability(args))
            return self._shown(job, args)

    def _inputs(self, names: list[str]) -> dict[str, Any]:
        ns = self.shell.user_ns
        values = {}
        for name in names:
            if not name.isidentifier():
                raise UsageError(f"--in {name!r} is not a variable name; write --in a,b")
            if name not in ns:
                raise UsageError(f"--in names {name!r}, but no variable {name!r} exists in this namespace; "
                                 "check the spelling or run the cell that defines it first")
            values[name] = ns[name]
        return values

    def _shown(self, job, args) -> Any:
        """What the cell shows: the handle (its receipt), or nothing with --quiet; --wait blocks first."""
        if args.wait:
            from .job import State

            try:
                job.wait()
            except KeyboardInterrupt:
                print(f"stopped waiting; job {job.short_id} keeps running (%job wait {job.short_id})",
                      file=sys.stderr)
                return None if args.quiet else job
            if not args.quiet:
                rec = job.record
                if rec.state == State.SUCCEEDED:
                    values = job.result()
                    if values:
                        from IPython.display import display

                        display(values)
        return None if args.quiet else job

    @magic_arguments(name="job")
    @argument("verb", nargs="?", default="help", help="one of: " + ", ".join(VERBS))
    @argument("args", nargs=argparse.REMAINDER, help="the verb's arguments (%%job help VERB)")
    @_doc(LINE_DOC)
    @line_magic("job")
    def job_line(self, line: str) -> Any:
        top = self.job_line.parser.parse_args(_argv(line))
        verb = top.verb
        if verb not in _PARSERS:
            raise UsageError(f"unknown verb {verb!r} for %job; use one of: {', '.join(VERBS)} (see %job help)")
        try:
            args = _PARSERS[verb].parse_args(top.args)
        except UsageError as exc:
            raise UsageError(f"%job {verb}: {exc} (see %job help {verb})") from None
        with _one_line_errors():
            return getattr(self, "_" + verb)(args)

    # --- verbs --------------------------------------------------------------------------------------
    def _run(self, a) -> Any:
        from . import api, params

        job = api.run_notebook(
            a.notebook, params.build(p=a.parameter, r=a.raw, y=a.yaml, f=a.parameters_file), name=a.name,
            kernel=a.kernel, cwd=a.cwd, retries=a.retries, timeout=a.timeout, priority=a.priority, tags=a.tag,
            key=a.key, cell_timeout=a.cell_timeout, start_worker=not a.no_worker, **_reliability(a))
        return self._shown(job, a)

    def _schedule(self, a) -> Any:
        from . import api, params
        from .schedule import schedule_text, schedules_table

        if a.action == "ls":
            return _Text(schedules_table(api.schedules()))
        if not a.name:
            raise UsageError(f"%job schedule {a.action} needs the schedule's name (see %job help schedule)")
        if a.action == "add":
            if not a.cron:
                raise UsageError('%job schedule add NAME "CRON" NOTEBOOK (or -c CODE): the cron expression is missing')
            kernel = None
            if a.code is not None:
                from .kernels import kernel_for_python

                kernel = kernel_for_python()
            d = api.schedule_add(a.name, a.cron, a.notebook, params.build(p=a.parameter, r=a.raw, y=a.yaml,
                                                                          f=a.parameters_file),
                                 code=a.code, tz=a.tz, misfire=a.misfire, misfire_cap=a.misfire_cap, overlap=a.overlap,
                                 job_name=a.job_name, retries=a.retries, timeout=a.timeout, notify=a.notify,
                                 kernel=kernel, start_worker=not a.no_worker)
            return _Text(schedule_text(d))
        if a.action == "run-now":
            return api.schedule_run_now(a.name, start_worker=not a.no_worker)
        if a.action == "rm":
            api.schedule_rm(a.name)
            return _Text(f"schedule {a.name} removed (the jobs it fired stay)")
        func = {"show": api.schedule_show, "pause": api.schedule_pause, "resume": api.schedule_resume}[a.action]
        return _Text(schedule_text(func(a.name)))

    def _ls(self, a) -> Any:
        from . import api
        from .panel import JobList

        return JobList(api.records(state=a.state or None, name=a.name, tag=a.tag, limit=a.limit))

    def _panel(self, a) -> Any:
        from .panel import Panel

        return Panel(state=a.state, name=a.name, tag=a.tag, limit=a.limit)

    def _status(self, a) -> None:
        from . import api
        from .panel import JobList, status_text, summary_text

        if a.id:
            print(status_text(api.get(a.id)))
            return
        print(summary_text())
        active = api.records(state=["waiting", "queued", "running", "retrying"], limit=50)
        if active:
            print(repr(JobList(active)))

    def _logs(self, a) -> None:
        from . import api

        text = api.logs(a.id, attempt=a.attempt)
        sys.stdout.write(text if text else f"(no output yet from job {api.get(a.id).short_id})\n")

    def _result(self, a) -> dict[str, Any]:
        from . import api

        job = api.get(a.id)
        values = job.result()
        if not values and job.state.active:
            print(f"job {job.short_id} is {job.state}: its outputs appear when it ends (%job wait {job.short_id})",
                  file=sys.stderr)
        return values

    def _pull(self, a) -> None:
        from . import api
        from .panel import names_and_types

        job = api.get(a.id)
        values = job.result()
        if a.names:
            missing = [n for n in a.names if n not in values]
            if missing:
                raise UsageError(f"job {job.short_id} has no output {missing[0]!r} "
                                 f"(it has: {', '.join(values) or 'none'})")
            values = {n: values[n] for n in a.names}
        if not values:
            state = job.state
            hint = f" yet; wait for it with %job wait {job.short_id}" if state.active else ""
            raise UsageError(f"job {job.short_id} ({state}) has no recorded outputs{hint}")
        skipped = [n for n in values if not n.isidentifier()]
        values = {n: v for n, v in values.items() if n.isidentifier()}
        self.shell.push(values)
        note = f" (skipped {', '.join(map(repr, skipped))}: not variable names; use %job result)" if skipped else ""
        print(f"pulled {names_and_types(values)} from job {job.short_id}{note}")

    def _wait(self, a) -> Any:
        from . import api
        from .panel import JobList

        jobs = api.wait(a.id, timeout=a.timeout)
        return jobs[0] if len(jobs) == 1 else JobList([j.record for j in jobs])

    def _cancel(self, a) -> None:
        from . import api
        from .job import State

        for i in a.id:
            job = api.cancel(i)
            state = job.state
            print(f"{job.short_id}: {'cancelled' if state == State.CANCELLED else 'cancel requested (stopping)'}")

    def _retry(self, a) -> Any:
        from . import api

        jobs = [api.retry(i, start_worker=not a.no_worker) for i in a.id]
        if len(jobs) == 1:
            return jobs[0]
        for job in jobs:
            print(f"{job.short_id}: queued again")
        return None

    def _dlq(self, a) -> Any:
        from . import api

        if a.action == "ack":
            if not a.id:
                raise UsageError("give the job ID(s) to acknowledge: %job dlq ack ID")
            for job in api.ack(a.id):  # all or none
                print(f"{job.short_id}: acknowledged")
            return None
        if a.id:
            raise UsageError(f"%job dlq {a.action} takes no job IDs; did you mean %job dlq ack ID?")
        if a.action == "purge":
            ids = api.prune(a.older_than or "0.001s", states=["failed", "timed_out"], dead_letters_only=True)
            print(f"purged {len(ids)} dead letter(s)")
            return None
        return DeadLetters(api.dead_letters(a.limit))

    def _prune(self, a) -> None:
        from . import api

        ids = api.prune(a.older_than, states=a.state, dry_run=a.dry_run)
        print(f"{'would prune' if a.dry_run else 'pruned'} {len(ids)} job(s) finished more than {a.older_than} ago")

    def _metrics(self, a) -> Any:
        from . import metrics

        return metrics.sli(window=a.window, by=None if a.by == "none" else a.by, freq=a.freq)

    def _help(self, a) -> None:
        if a.verb:
            if a.verb not in _PARSERS:
                raise UsageError(f"unknown verb {a.verb!r}; use one of: {', '.join(VERBS)}")
            print(_PARSERS[a.verb].format_help())
        else:
            print(verbs_help())


def load_ipython_extension(ipython) -> None:
    """``%load_ext nbjobs``: register ``%%job`` and ``%job``."""
    ipython.register_magics(JobMagics)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext nbjobs``: remove the magics and stop live receipts."""
    magics = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        if isinstance(getattr(magics[kind].get("job"), "__self__", None), JobMagics):
            del magics[kind]["job"]
    ipython.magics_manager.registry.pop("JobMagics", None)
    if "nbjobs.panel" in sys.modules:
        sys.modules["nbjobs.panel"].unwatch_all()
