"""``%%job`` and ``%job``: run notebook cells and notebooks as background jobs, from IPython.

    %load_ext nbjobs

    %%job --name train --in df,params --out model,score --retries 2 --timeout 600
    model = fit(df, **params)
    score = evaluate(model)

The cell returns at once with a `nbjobs.Job` handle, shown under the cell as its receipt (live
while the job runs, see `nbjobs.panel`); ``job = _`` keeps it.  ``%job VERB`` has the verbs of
the ``nbjobs`` command, from the same table (nbjobs/verbs.py): ``run sweep ls show (status) logs
search result pull wait compare report cancel retry dlq prune panel metrics schedule help``.

Loading is light: this module imports only IPython's magic machinery and the verb table
(nbjobs/verbs.py, argparse specs); the API, pandas, papermill and ipywidgets load when a magic
first needs them.

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

from . import verbs


def _arguments(options):
    """The `verbs.Arg` of the ``%%job`` cell (side `verbs.CELL`) as `magic_arguments.argument`
    decorators, in order."""
    def deco(func):
        for a in reversed([a for a in options if verbs.CELL in a.sides]):
            func = argument(*a.flags, **a.kw)(func)
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

def verbs_help() -> str:
    """The ``%job help`` text: every verb with its arguments, its aliases and an example."""
    lines = ["%job VERB [ARGS]   (the verbs of the `nbjobs` command; see nbjobs/verbs.py)", ""]
    for verb in verbs.verbs(verbs.MAGIC):
        lines.append(f"  %job {verb.name} {verb.usage}".rstrip())
        lines.extend(f"  %job {alias} {verb.usage}   (the same)".rstrip() for alias in verb.aliases)
        lines.append(f"      {verb.help_for(verbs.MAGIC)}")
        lines.append(f"      e.g. {verbs.example(verb, verbs.MAGIC).splitlines()[0]}")
    lines += ["", "An ID is any unique prefix of a job ID, as in git.  {expr} in the line expands Python",
              "values: %job wait {job.id}.  Cell jobs: %%job [options] (see %%job?)."]
    return "\n".join(lines)


def _verb_parsers() -> dict[str, MagicArgumentParser]:
    """One parser per word of `VERBS` (an alias shares its verb's parser)."""
    out = {}
    for verb in verbs.verbs(verbs.MAGIC):
        p = MagicArgumentParser(prog=f"%job {verb.name}", description=verb.help_for(verbs.MAGIC),
                                epilog=f"example:\n  {verbs.example(verb, verbs.MAGIC)}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        verbs.build(p, verb, verbs.MAGIC)
        for word in (verb.name, *verb.aliases):
            out[word] = p
    return out


#: every word ``%job`` takes as a verb (names and aliases), and its parser
PARSERS = _verb_parsers()
VERBS = tuple(PARSERS)
LINE_DOC = (verbs_help() + "\n\nThe verbs in detail:\n\n"
            + "\n".join(PARSERS[v.name].format_help() for v in verbs.verbs(verbs.MAGIC) if v.name != "help"))


def _doc(text: str):
    def deco(func):
        func.__doc__ = text
        return func
    return deco


# --- errors ------------------------------------------------------------------------------------------
def _magic_words(message: str) -> str:
    """Say errors in the notebook's words: ``%job ls`` instead of ``nbjobs ls``, ``--in`` for inputs."""
    message = message.replace("`nbjobs ", "`%job ")
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

    def __init__(self, records=()):
        from .api import Job

        super().__init__(Job(r.id) for r in records)
        self.records = list(records)

    def __repr__(self) -> str:
        from .text import dead_letters_table

        return dead_letters_table(self.records)

    def _repr_html_(self) -> str:
        from .text import DEAD_LETTER_HEAD, dead_letter_rows

        if not self.records:
            return "<p>no dead letters</p>"
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in DEAD_LETTER_HEAD)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in dead_letter_rows(self.records))
        return f"<table class='nbjobs-dlq'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Text(str):
    """A string shown as itself (no quotes) as a cell's value."""

    def __repr__(self) -> str:
        return str(self)


#: names IPython puts in every namespace: not the user's variables
_SHELL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


def free_names(source: str) -> list[str]:
    r"""Names the code reads but never binds (no assignment, import, def, class, argument, loop
    or ``with`` target, anywhere in it), builtins left out, in order of first use: what the
    code expects to find in its namespace.  Unparsable code has none (the job will say why).

    >>> free_names("import numpy as np\ny = np.log(df.x) + k\nfor i in range(3): y += i\nprint(y, total)")
    ['df', 'k', 'total']
    """
    import ast
    import builtins

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    bound: set[str] = set()
    used: dict[str, tuple[int, int]] = {}  # name -> where it is first read
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                bound.add(node.id)
            else:
                used[node.id] = min(used.get(node.id, (1 << 30, 0)), (node.lineno, node.col_offset))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
    return [n for n in sorted(used, key=used.__getitem__) if n not in bound and not hasattr(builtins, n)]


def _split(values: list[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (``--in a,b --in c``)."""
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


# --- the magics --------------------------------------------------------------------------------------
@magics_class
class JobMagics(Magics):
    """``%%job`` (a cell as a job) and ``%job VERB`` (the CLI's verbs)."""

    @magic_arguments(name="%job")
    @kwds(epilog=CELL_EXAMPLES)
    @_arguments(verbs.CELL_OPTIONS)
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
            from . import api

            options = verbs.job_kwargs(args)
            options["kernel"] = options["kernel"] or api.own_kernel()
            ins = _split(args.inputs)
            job = api.submit(cell, inputs=self._inputs(ins), outputs=_split(args.outputs),
                             origin={"cell": self.shell.execution_count, "magic": f"%%job {line}".rstrip()},
                             **options)
            missing = [n for n in free_names(cell) if n not in ins and n in self.shell.user_ns
                       and not n.startswith("_") and n not in _SHELL_NAMES]
            if missing:
                one = len(missing) == 1
                print(f"warning: the job runs in a fresh kernel, where {', '.join(missing)} "
                      f"{'is' if one else 'are'} not defined; pass {'it' if one else 'them'} with "
                      f"--in {','.join(missing)} (or import or define {'it' if one else 'them'} in the cell)",
                      file=sys.stderr)
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
        verb = verbs.find(top.verb, verbs.MAGIC)
        if verb is None:
            raise UsageError(f"unknown verb {top.verb!r} for %job; use one of: {', '.join(VERBS)} (see %job help)")
        try:
            args = PARSERS[top.verb].parse_args(top.args)
        except UsageError as exc:
            raise UsageError(f"%job {top.verb}: {exc} (see %job help {top.verb})") from None
        with _one_line_errors():
            return getattr(self, "_" + verb.func)(args)

    # --- verbs (their arguments and help: nbjobs/verbs.py) ------------------------------------------
    def _run(self, a) -> Any:
        from . import api

        return self._shown(api.run_notebook(a.notebook, **verbs.job_kwargs(a)), a)

    def _sweep(self, a) -> Any:
        from .sweeps import sweep

        group = sweep(a.notebook, **verbs.sweep_kwargs(a))
        if a.wait:
            try:
                group.wait()
            except KeyboardInterrupt:
                print(f"stopped waiting; group {group.short_id} keeps running (%job wait {group.short_id})",
                      file=sys.stderr)
        return group

    def _schedule(self, a) -> Any:
        from . import api, params
        from .text import schedule_text, schedules_table

        if a.action == "ls":
            return _Text(schedules_table(api.schedules()))
        if a.action == "add":
            d = api.schedule_add(a.name, a.cron, a.notebook, params.build(p=a.parameter, r=a.raw, y=a.yaml,
                                                                          f=a.parameters_file),
                                 code=a.code, tz=a.tz, misfire=a.misfire, misfire_cap=a.misfire_cap, overlap=a.overlap,
                                 job_name=a.job_name, retries=a.retries, timeout=a.timeout, notify=a.notify,
                                 notify_on=a.notify_on, tags=a.tag, cwd=a.cwd,
                                 kernel=a.kernel or (api.own_kernel() if a.code is not None else None),
                                 start_worker=not a.no_worker, report=a.report)
            return _Text(schedule_text(d))
        if a.action == "run-now":
            return api.schedule_run_now(a.name, start_worker=not a.no_worker)
        if a.action == "backfill":
            from .text import backfill_table

            return _Text(backfill_table(api.schedule_backfill(a.name, a.start, a.end, limit=a.limit,
                                                              start_worker=not a.no_worker)))
        if a.action == "rm":
            api.schedule_rm(a.name)
            return _Text(f"schedule {a.name} removed (the jobs it fired stay)")
        func = {"show": api.schedule_show, "pause": api.schedule_pause, "resume": api.schedule_resume}[a.action]
        return _Text(schedule_text(func(a.name)))

    def _ls(self, a) -> Any:
        from . import api
        from .panel import JobList

        return JobList(api.records(state=a.state or None, name=a.name, tag=a.tag, limit=a.limit, group=a.group))

    def _search(self, a) -> Any:
        from . import api
        from .panel import JobList

        return JobList(api.search(a.query, limit=a.limit))

    def _panel(self, a) -> Any:
        from .panel import Panel

        return Panel(state=a.state, name=a.name, tag=a.tag, limit=a.limit)

    def _show(self, a) -> None:
        from . import api
        from .panel import JobList
        from .text import job_detail, summary_text

        if a.id:
            found = api.lookup(a.id)
            if isinstance(found, api.Job):
                print(job_detail(found))
            else:
                from .text import group_detail

                print(group_detail(found))
            return
        print(summary_text())
        active = api.records(state=["waiting", "queued", "running", "retrying"], limit=50)
        if active:
            print(repr(JobList(active)))

    def _logs(self, a) -> None:
        from . import api

        found = api.lookup(a.id)
        if not isinstance(found, api.Job):
            from .text import group_logs

            sys.stdout.write(group_logs(found, a.attempt))
            return
        text = api.logs(found.id, attempt=a.attempt)
        sys.stdout.write(text if text else f"(no output yet from job {found.short_id})\n")

    def _result(self, a) -> Any:
        from . import api

        job = api.lookup(a.id)
        if not isinstance(job, api.Job):
            return job.results()
        values = job.result()
        if not values and job.state.active:
            print(f"job {job.short_id} is {job.state}: its outputs appear when it ends (%job wait {job.short_id})",
                  file=sys.stderr)
        return values

    def _pull(self, a) -> None:
        from . import api
        from .text import names_and_types

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

        found = [api.lookup(i) for i in a.id]
        if len(found) == 1 and not isinstance(found[0], api.Job):
            return found[0].wait(a.timeout)
        jobs = api.wait(found, timeout=a.timeout)
        return jobs[0] if len(jobs) == 1 else JobList([j.record for j in jobs])

    def _compare(self, a) -> Any:
        from . import api

        return api.compare(a.a, a.b)

    def _report(self, a) -> Any:
        from . import api

        return _Text(api.report(a.id, no_input=a.no_input, output=a.output, attempt=a.attempt))

    def _cancel(self, a) -> None:
        from . import api
        from .text import cancel_line

        found = [api.lookup(i) for i in a.id]  # an unknown ID among several: nothing is cancelled
        for item in found:
            print(cancel_line(api.cancel(item.id)))

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
            ids = api.prune(a.older_than or "0.001s", states=["failed", "timed_out"], dead_letters_only=True,
                            dry_run=a.dry_run)
            print(f"{'would purge' if a.dry_run else 'purged'} {len(ids)} dead letter(s)")
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
            if a.verb not in PARSERS:
                raise UsageError(f"unknown verb {a.verb!r}; use one of: {', '.join(VERBS)}")
            print(PARSERS[a.verb].format_help())
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
    if "nbjobs.watch" in sys.modules:
        sys.modules["nbjobs.watch"].unwatch_all()
