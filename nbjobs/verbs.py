"""The one table of verbs: ``nbjobs VERB`` (nbjobs/cli.py) and ``%job VERB`` (nbjobs/magics.py) are
both built from it, so a verb, its arguments, its help and its example cannot drift between the two.

Each `Verb` has a name, aliases, a one-line help, a short synopsis (for ``%job help``), examples,
its arguments (argparse specs, each marked with the sides that have it), the handler's name and
the sides that have the verb: `CLI` (``nbjobs VERB``) and `MAGIC` (``%job VERB``).  A handler is
``cmd_<handler>`` in nbjobs/cli.py (or cli_flow.py) and ``JobMagics._<handler>`` in magics.py: each
side prints or returns in its own way, the arguments and their meaning are the same.

The ``%%job`` cell magic's options are `CELL_OPTIONS`: the job options of ``run`` that make sense
for a cell (side `CELL`), plus ``--in``/``--out``.

>>> [v.name for v in verbs(MAGIC)][:4]
['run', 'sweep', 'ls', 'show']
>>> find("status", CLI).name, find("pull", CLI)
('show', None)
>>> print(example(find("ls", CLI), CLI))
nbjobs ls --state failed --limit 50
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Iterable

from .policy import NOTIFY_ON

#: the sides a verb or an argument can be on
CLI, MAGIC, CELL = "cli", "magic", "cell"
BOTH = (CLI, MAGIC)
ALL = (CLI, MAGIC, CELL)
PREFIX = {CLI: "nbjobs", MAGIC: "%job"}


@dataclass(frozen=True)
class Arg:
    """One argparse argument: its flags, `add_argument` keywords, and the sides that have it."""

    flags: tuple[str, ...]
    kw: dict[str, Any]
    sides: tuple[str, ...] = BOTH


def arg(*flags: str, sides: Iterable[str] = BOTH, **kw: Any) -> Arg:
    """``arg("--limit", type=int, help=...)``: an `Arg` on both sides unless ``sides`` says otherwise."""
    return Arg(tuple(flags), kw, tuple(sides))


@dataclass(frozen=True)
class Verb:
    """One verb of ``nbjobs`` and/or ``%job``; ``actions`` are its sub-verbs (``schedule add``)."""

    name: str
    help: str
    usage: str
    examples: tuple[str, ...]
    args: tuple[Arg, ...] = ()
    sides: tuple[str, ...] = BOTH
    aliases: tuple[str, ...] = ()
    handler: str = ""
    actions: tuple["Verb", ...] = ()
    #: examples for the magic when they differ from the CLI's (a value assigned, another option)
    magic_examples: tuple[str, ...] = field(default=())
    #: the magic's help when it says it differently (the magic returns a value where the CLI prints)
    magic_help: str = ""

    def help_for(self, side: str) -> str:
        """The one-line help as one side says it."""
        return self.magic_help if side == MAGIC and self.magic_help else self.help

    @property
    def func(self) -> str:
        """The handler's name without its prefix (``cmd_`` in the CLI, ``_`` in the magics)."""
        return self.handler or self.name.replace("-", "_")


def example(verb: Verb, side: str) -> str:
    """The verb's examples for one side, one per line (``{cmd}`` becomes ``nbjobs`` or ``%job``)."""
    items = (verb.magic_examples or verb.examples) if side == MAGIC else verb.examples
    return "\n  ".join(e.replace("{cmd}", PREFIX.get(side, "%job")) if "{cmd}" in e
                       else f"{PREFIX.get(side, '%job')} {e}" for e in items)


def add_arguments(parser: argparse.ArgumentParser, args: Iterable[Arg], side: str) -> argparse.ArgumentParser:
    """Add the arguments of ``side`` to an argparse parser (also a `MagicArgumentParser`)."""
    for a in args:
        if side in a.sides:
            parser.add_argument(*a.flags, **a.kw)
    return parser


def add_actions(parser: argparse.ArgumentParser, verb: Verb, side: str) -> None:
    """The verb's sub-verbs as argparse sub-parsers (``dest="action"``, required)."""
    if not verb.actions:
        return
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    for act in verb.actions:
        p = sub.add_parser(act.name, help=act.help_for(side), description=act.help_for(side),
                           epilog=f"example:\n  {example(act, side)}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p, act.args, side)


def build(parser: argparse.ArgumentParser, verb: Verb, side: str) -> argparse.ArgumentParser:
    """Fill a verb's parser for one side: its arguments, then its sub-verbs."""
    add_arguments(parser, verb.args, side)
    add_actions(parser, verb, side)
    return parser


def verbs(side: str) -> list[Verb]:
    """The verbs of one side, in the table's order."""
    return [v for v in VERBS if side in v.sides]


def find(word: str, side: str) -> Verb | None:
    """The verb named (or aliased) ``word`` on ``side``; None if that side has none."""
    for v in verbs(side):
        if word == v.name or word in v.aliases:
            return v
    return None


def words(side: str) -> list[str]:
    """Every word that names a verb on ``side``: names and aliases."""
    return [w for v in verbs(side) for w in (v.name, *v.aliases)]


# --- the options of a job (nbjobs run, %job run, %%job) ---------------------------------------------
ID = arg("id", help="job ID or unique prefix")
IDS = arg("id", nargs="+", help="job or group ID(s) or unique prefix(es); a group's stands for its jobs")
GROUP_ID = arg("id", help="job or group ID, or a unique prefix")
NO_WORKER = arg("--no-worker", action="store_true", sides=ALL, help="do not start a background worker")


def _json(what: str = "print one JSON object") -> Arg:
    return arg("--json", action="store_true", sides=(CLI,), help=what)


PARAM_OPTIONS = (
    arg("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), sides=ALL,
        help="a parameter, typed like papermill's -p (int, float, bool, None or string); repeatable"),
    arg("-r", "--raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), sides=ALL,
        help="a parameter kept as a raw string"),
    arg("-y", "--yaml", action="append", default=[], metavar="YAML", sides=ALL,
        help="parameters as a YAML mapping, e.g. -y '{n: 7, title: Q3}'"),
    arg("-f", "--parameters-file", action="append", default=[], metavar="FILE", sides=ALL,
        help="a YAML file of parameters"),
)

JOB_OPTIONS = (
    arg("--name", sides=ALL, help="a name for the job (default: the notebook's name or the code's first line)"),
    arg("--kernel", metavar="NAME", sides=ALL,
        help="kernel to run in (default: the notebook's; for code, python3 from the command line and this "
             "kernel's own kernelspec in %%%%job)"),
    arg("--cwd", metavar="DIR", sides=ALL,
        help="working directory of the job (default: the current directory; in a notebook, the kernel's, "
             "which Jupyter sets to the notebook's folder)"),
    arg("--retries", type=int, default=0, metavar="N", sides=ALL, help="retries after a failed attempt (default 0)"),
    arg("--timeout", type=float, metavar="S", sides=ALL, help="whole-job timeout in seconds"),
    arg("--cell-timeout", type=float, metavar="S", sides=ALL, help="per-cell timeout in seconds, passed to papermill"),
    arg("--priority", type=int, default=0, metavar="P", sides=ALL, help="higher runs first (default 0)"),
    arg("--tag", action="append", default=[], metavar="T", sides=ALL, help="a tag (repeatable)"),
    arg("--key", metavar="K", sides=ALL,
        help="idempotency key: a second submit with the same key returns the first job"),
    arg("--retry-on", metavar="KINDS", sides=ALL,
        help="which failures retry: any of error,timeout,lost (default all; kernel death is an error)"),
    arg("--infra-retries", type=int, metavar="N", sides=ALL,
        help="re-queues after attempts lost to the system (worker, runner or kernel lost before the job's code "
             "ran), not charged to --retries (default: the home's setting, else 3)"),
    arg("--backoff-base", type=float, metavar="S", sides=ALL, help="first retry delay ceiling in seconds (default 1)"),
    arg("--backoff-factor", type=float, metavar="F", sides=ALL, help="delay growth per retry (default 2)"),
    arg("--backoff-cap", type=float, metavar="S", sides=ALL, help="largest retry delay in seconds (default 300)"),
    arg("--jitter", choices=("full", "none"), sides=ALL, help="full jitter (default) or exact delays"),
    arg("--secret", action="append", default=[], metavar="NAME", sides=ALL,
        help="pass the worker's environment variable NAME to the job; its value is never stored and is "
             "redacted from logs and output notebooks (repeatable)"),
    arg("--resources", action="append", default=[], metavar="NAME=N[,NAME=N]", sides=ALL,
        help="Dask resources the job needs, e.g. GPU=1,MEM=64e9: it runs only on a Dask worker started with "
             "them (dask worker --resources GPU=1) and stays queued while no worker offers them (the local "
             "executor offers none)"),
    arg("--after", action="append", default=[], metavar="ID[,ID...]", sides=ALL,
        help="wait (state waiting) until these jobs succeeded; cancelled (dependency_failed) if one fails"),
    arg("--after-any", action="store_true", sides=ALL, help="with --after: run once they all ended, however"),
    arg("--concurrency-key", metavar="K", sides=ALL,
        help="a per-name limit: at most --max-running jobs with this key run at once; the others wait queued"),
    arg("--max-running", type=int, metavar="N", sides=ALL,
        help="with --concurrency-key: how many jobs with the key may run at once (default 1)"),
    arg("--notify", metavar="URL", sides=ALL, help="POST a JSON body to this http(s) URL when the job ends"),
    arg("--notify-on", choices=NOTIFY_ON, sides=ALL,
        help="end (final states, default), all (every state change) or failure (only failed or timed out)"),
    arg("--report", choices=("html",), sides=ALL,
        help="html: once the job succeeded, its worker renders the output notebook to a standalone HTML page in "
             "the run folder (nbjobs show and the panel link to it)"),
    arg("--wait", action="store_true", sides=(CLI,), help="wait for the job to end; exit 0 if it succeeded, else 1"),
    arg("--wait", action="store_true", sides=(MAGIC, CELL), help="block until the job ends, then show its result"),
    arg("--timeout-wait", type=float, metavar="S", sides=(CLI,), help="with --wait: give up after S seconds"),
    arg("--quiet", action="store_true", sides=(MAGIC, CELL), help="show nothing; the cell has no value"),
    NO_WORKER,
    _json("print the job as one JSON object"),
)

IO_OPTIONS = (
    arg("--in", dest="inputs", action="append", default=[], metavar="A,B", sides=(CELL,),
        help="variables copied by value (cloudpickle) from this namespace into the job"),
    arg("--out", dest="outputs", action="append", default=[], metavar="X,Y", sides=(CELL,),
        help="variables recorded when the cell has run; read them back with job.result() or %%job pull ID"),
)

#: the options of the ``%%job`` cell magic
CELL_OPTIONS = IO_OPTIONS + PARAM_OPTIONS + JOB_OPTIONS


def job_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """`PARAM_OPTIONS` and `JOB_OPTIONS` as parsed (``nbjobs run``, ``%job run``, ``%%job``) as the
    keywords of `nbjobs.submit` and `nbjobs.run_notebook`: the one place they are translated."""
    from . import params

    backoff = {k: v for k, v in (("base", a.backoff_base), ("factor", a.backoff_factor), ("cap", a.backoff_cap),
                                 ("jitter", a.jitter)) if v is not None}
    return dict(name=a.name, parameters=params.build(p=a.parameter, r=a.raw, y=a.yaml, f=a.parameters_file),
                kernel=a.kernel, cwd=a.cwd, retries=a.retries, timeout=a.timeout, priority=a.priority, tags=a.tag,
                key=a.key, cell_timeout=a.cell_timeout, start_worker=not a.no_worker, secrets=a.secret,
                retry_on=a.retry_on, infra_retries=a.infra_retries, backoff=backoff or None,
                after=a.after or None, after_any=a.after_any, notify=a.notify,
                notify_on=a.notify_on, concurrency_key=a.concurrency_key, max_running=a.max_running,
                report=a.report, resources=a.resources or None)


#: a sweep's parameters: the options of `PARAM_OPTIONS`, each value a list of values
SWEEP_PARAM_OPTIONS = (
    arg("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUES"),
        help="a swept parameter: values split on commas, each typed like papermill's -p (e.g. -p lr 0.1,0.01); "
             "repeatable, every combination runs"),
    arg("-r", "--raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUES"),
        help="a swept parameter whose values (split on commas) stay strings"),
    arg("-y", "--yaml", action="append", default=[], metavar="YAML",
        help="swept parameters as YAML, a list of values each, for values with commas or lists: "
             "-y 'lr: [0.1, \"a,b\"]' (a single value is the same in every job)"),
    arg("-f", "--parameters-file", action="append", default=[], metavar="FILE", help="a YAML file like -y"),
)


def sweep_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """``nbjobs sweep`` / ``%job sweep`` as parsed, as the keywords of `nbjobs.sweep`: the grid (from
    `SWEEP_PARAM_OPTIONS`), ``zip``, ``max_parallel`` and the job options of `job_kwargs`."""
    from . import params

    grid = params.build_grid(p=a.parameter, r=a.raw, y=a.yaml, f=a.parameters_file)
    plain = argparse.Namespace(**{**vars(a), "parameter": [], "raw": [], "yaml": [], "parameters_file": []})
    kw = job_kwargs(plain)
    kw.pop("parameters")
    return dict(kw, grid=grid, zip=a.zip, max_parallel=a.max_parallel)


_LIST_FILTERS = (
    arg("--name", help="only jobs with this name (glob patterns like 'train*' work)"),
    arg("--tag", help="only jobs with this tag"),
)

# --- schedule's actions -------------------------------------------------------------------------------
_SCHEDULE_NAME = arg("name", help="schedule name")
_SCHEDULE_ACTIONS = (
    Verb("add", "add a schedule: each fire submits the notebook (or -c CODE) as a job",
         'NAME "CRON" NOTEBOOK|-c CODE [options]',
         ('schedule add nightly "@daily" etl.ipynb --misfire all --misfire-cap 3 --overlap queue',), args=(
             arg("name", help="schedule name (letters, digits, - _ .)"),
             arg("cron", help="5 cron fields (minute hour day month weekday) or @hourly/@daily/@weekly/..."),
             arg("notebook", nargs="?", help="the notebook each fire runs"),
             arg("-c", "--code", help="Python source to run as a cell job instead of a notebook"),
             *(Arg(a.flags, a.kw, BOTH) for a in PARAM_OPTIONS),
             arg("--tz", default="UTC", help="IANA time zone of the cron fields (default UTC), e.g. Europe/Berlin"),
             arg("--misfire", default="once", help="after downtime: skip, once (default: one run for the missed "
                                                   "slots) or all (each missed slot, up to --misfire-cap)"),
             arg("--misfire-cap", type=int, default=10, help="most missed slots run with --misfire all (default 10)"),
             arg("--overlap", default="skip", help="when the previous fire is still active: skip (default), queue "
                                                   "(run after it) or allow"),
             arg("--job-name", help="name of the fired jobs (default: the schedule's name)"),
             arg("--kernel", help="kernel to run in (default: the notebook's; for code, python3 from the command "
                                  "line and this kernel's own kernelspec in %%job)"),
             arg("--cwd", help="working directory of the jobs (default: the current directory)"),
             arg("--retries", type=int, default=0, help="retries of each fired job (default 0)"),
             arg("--timeout", type=float, help="whole-job timeout in seconds"),
             arg("--tag", action="append", default=[], help="a tag of the fired jobs (repeatable)"),
             arg("--notify", metavar="URL", help="POST a JSON body to this http(s) URL when a fired job ends"),
             arg("--notify-on", choices=NOTIFY_ON,
                 help="end (final states, default), all (every state change) or failure (only failed or timed out)"),
             arg("--report", choices=("html",), help="html: render each fired job's output notebook to an HTML page "
                                                     "once it succeeded"),
             NO_WORKER, _json("print the schedule as JSON"))),
    Verb("ls", "list schedules with their next three run times", "", ("schedule ls",),
         args=(_json("print a JSON list"),)),
    Verb("show", "one schedule: settings, next runs, recent decisions", "NAME", ("schedule show daily-report",),
         args=(_SCHEDULE_NAME, _json())),
    Verb("pause", "stop firing (slots of the pause never run)", "NAME", ("schedule pause daily-report",),
         args=(_SCHEDULE_NAME,)),
    Verb("resume", "fire again from now on", "NAME", ("schedule resume daily-report",), args=(_SCHEDULE_NAME,)),
    Verb("rm", "remove a schedule (its jobs stay)", "NAME", ("schedule rm daily-report",), args=(_SCHEDULE_NAME,)),
    Verb("run-now", "submit one job of the schedule now and print its ID", "NAME",
         ("schedule run-now daily-report",), args=(_SCHEDULE_NAME, NO_WORKER)),
    Verb("backfill", "run past slots, each as a job with its own slot time (nbjobs_scheduled_for); a slot that "
                     "ran before is not run again", "NAME --from WHEN --to WHEN",
         ("schedule backfill daily-report --from 2025-03-01 --to 2025-03-07",), args=(
             _SCHEDULE_NAME,
             arg("--from", dest="start", required=True, metavar="WHEN",
                 help="first slot: a day (2025-03-01, in the schedule's time zone), a time (2025-03-01T06:30, "
                      "offsets like +01:00 allowed) or epoch seconds"),
             arg("--to", dest="end", required=True, metavar="WHEN",
                 help="last slot, included (a day means the whole day); not later than now"),
             arg("--limit", type=int, default=100, help="most slots to run (default 100)"),
             NO_WORKER, _json("print a JSON list: slot, scheduled_for, job, created"))),
)

# --- the verbs --------------------------------------------------------------------------------------------
VERBS: tuple[Verb, ...] = (
    Verb("run", "submit a notebook (or -c CODE) as a job and print its ID", "NOTEBOOK [-p NAME VALUE]... [options]",
         magic_help="submit a notebook job (papermill); returns the handle",
         examples=('run report.ipynb -p n 7 -p title "Q3" --wait',
                   "run -c \"import nbjobs; nbjobs.record('answer', 6*7)\" --name quick",
                   "run train.ipynb --resources GPU=1,MEM=64e9"),
         magic_examples=("run report.ipynb -p n 10 --retries 1",), args=(
             arg("notebook", nargs="?", sides=(CLI,), help="the notebook to run"),
             arg("notebook", sides=(MAGIC,), help="the notebook to run"),
             arg("-c", "--code", sides=(CLI,), help="Python source to run as a cell job instead of a notebook"),
             *PARAM_OPTIONS, *JOB_OPTIONS)),
    Verb("sweep", "submit a parameter sweep: one job per combination, as one group with its own ID; print the ID",
         "NOTEBOOK -p NAME V1,V2 [-p NAME V1,V2]... [--zip] [--max-parallel N] [options]",
         magic_help="submit a parameter sweep as one group; returns the group's handle (group.results() is a "
                    "DataFrame)",
         examples=("sweep train.ipynb -p lr 0.1,0.01 -p depth 3,5 --max-parallel 2",
                   "sweep train.ipynb -p lr 0.1,0.01 -p depth 3,5 --zip --wait",
                   "sweep train.ipynb -y 'lr: [0.1, \"a,b\"]' -y 'layers: [[64, 64], [128]]'"),
         magic_examples=("sweep train.ipynb -p lr 0.1,0.01 -p depth 3,5 --max-parallel 2",
                         "g = {cmd} sweep train.ipynb -p lr 0.1,0.01 --wait   # then g.results()"), args=(
             arg("notebook", nargs="?", sides=(CLI,), help="the notebook each job runs"),
             arg("notebook", sides=(MAGIC,), help="the notebook each job runs"),
             arg("-c", "--code", sides=(CLI,), help="Python source to run as cell jobs instead of a notebook"),
             *SWEEP_PARAM_OPTIONS,
             arg("--zip", action="store_true", help="pair the i-th values of each parameter instead of every "
                                                    "combination"),
             arg("--max-parallel", type=int, metavar="N", help="at most N of the sweep's jobs run at once"),
             *(a for a in JOB_OPTIONS if a.flags != ("--quiet",)))),
    Verb("ls", "list recent jobs, newest first", magic_help="recent jobs, newest first (a list of handles)",
         usage="[--state S] [--name N] [--tag T] [--limit N]", examples=("ls --state failed --limit 50",), args=(
             arg("--state", action="append", help="only jobs in this state (repeatable)"), *_LIST_FILTERS,
             arg("--group", metavar="ID", help="only the jobs of this group (a sweep)"),
             arg("--limit", type=int, default=20, help="at most this many (default 20)"),
             _json("print a JSON list"))),
    Verb("show", "one job in detail: state, attempts, error, outputs, events (a group: its jobs and progress)",
         magic_help="one job (or group) in detail; without ID: counts per state and workers", usage="[ID]",
         examples=("show 8f3a2c --json",), magic_examples=("show 8f3a2c",), aliases=("status",), args=(
             arg("id", sides=(CLI,), help="job or group ID, or a unique prefix"),
             arg("id", nargs="?", sides=(MAGIC,), help="job or group ID, or a unique prefix (none: a summary of "
                                                       "the home)"),
             _json())),
    Verb("logs", "print a job's captured output (the latest attempt's, or the given one's; a group: each job's)",
         "ID [--attempt N]", ("logs 8f3a2c -f",), magic_examples=("logs 8f3a2c",), args=(
             GROUP_ID, arg("-f", "--follow", action="store_true", sides=(CLI,),
                           help="keep printing until the job ends"),
             arg("--attempt", type=int, help="attempt number (default: the latest)"))),
    Verb("search", "find jobs by words in their name, tags, parameters, error or log tail, best match first",
         magic_help="jobs matching the words, best match first (a list of handles)",
         usage="QUERY [--limit N]",
         examples=("search KeyError", "search '\"connection refused\" OR timeout' --limit 10",
                   "search 'error_message: KeyError' --json"),
         magic_examples=("search KeyError --limit 10", "search 'error_message: KeyError'"), args=(
             arg("query", help='SQLite FTS5 query: words (all must match), "a phrase" in double quotes, prefix*, '
                               'OR, NOT, or a column such as error_message: KeyError'),
             arg("--limit", type=int, default=50, help="at most this many (default 50)"),
             _json("print a JSON list"))),
    Verb("result", "print a job's recorded outputs (a group: its results table, one row per job)",
         magic_help="the recorded outputs as a dict, same types as recorded (a group: its results DataFrame)",
         usage="ID", examples=("result 8f3a2c --json",),
         magic_examples=("{cmd} result 8f3a2c", "res = {cmd} result 8f3a2c"), args=(
             GROUP_ID, _json("one JSON object; values stored as files appear as {\"$type\", \"$file\"}"))),
    Verb("pull", "put recorded outputs into this namespace under their names", "ID [NAME...]",
         ("pull 8f3a2c model score",), sides=(MAGIC,), args=(
             ID, arg("names", nargs="*", help="outputs to pull (default: all)"))),
    Verb("wait", "wait for jobs to end; exit 0 if all succeeded, else 1",
         magic_help="block until the job(s) end; returns the handle",
         usage="ID... [--timeout S]", examples=("wait 8f3a2c 91bc04 --timeout 600",), args=(
             IDS, arg("--timeout", type=float, help="give up after this many seconds"),
             _json("print the job(s) as JSON"))),
    Verb("cancel", "cancel jobs (a running job's kernel is stopped; a group: its unfinished jobs)", "ID...",
         ("cancel 8f3a2c",), args=(IDS,)),
    Verb("retry", "run failed, timed-out or cancelled jobs again under the same ID (a group: those of its jobs)",
         "ID... [--no-worker]",
         ("retry 8f3a2c",), args=(IDS, NO_WORKER)),
    Verb("compare", "compare two runs: parameters that differ, outputs (numbers with their delta), code and "
                    "versions, cell durations, the first cell whose output differs, which one failed where",
         "A B", ("compare 8f3a2c 91bc04", "compare 8f3a2c 91bc04 --json"), magic_examples=("compare 8f3a2c 91bc04",),
         magic_help="compare two runs (a table in the notebook; .to_dict() for code)", args=(
             arg("a", help="first job: ID or unique prefix"), arg("b", help="second job: ID or unique prefix"),
             _json("print the comparison as one JSON object"))),
    Verb("report", "render a job's output notebook to a standalone HTML page (nbconvert) and print its path",
         "ID [--no-input] [-o FILE] [--attempt N]",
         ("report 8f3a2c", "report 8f3a2c --no-input -o q3-report.html"),
         magic_help="render a job's output notebook to a standalone HTML page; returns its path", args=(
             ID, arg("--no-input", action="store_true", help="leave the code out: outputs and markdown only"),
             arg("-o", "--output", metavar="FILE", help="where to write it (default: report.html, or "
                                                        "report-no-input.html, in the attempt's run folder)"),
             arg("--attempt", type=int, help="attempt number (default: the latest with an output notebook)"))),
    Verb("dlq", "dead letters (failed or timed-out jobs with no retry left): list, ack or purge them",
         "[ls | ack ID... | purge [--older-than D]]",
         ("dlq", "retry 8f3a2c            # re-drive one", "dlq ack 8f3a2c", "dlq purge --older-than 7d"), args=(
             arg("action", nargs="?", choices=("ls", "ack", "purge"), default="ls",
                 help="ls (default), ack ID..., or purge"),
             arg("id", nargs="*", help="job ID(s) for ack"),
             arg("--older-than", metavar="DURATION", help="purge: only dead letters finished before (e.g. 7d)"),
             arg("--dry-run", action="store_true", help="purge: only say how many"),
             arg("--limit", type=int, default=100, help="at most this many (default 100)"),
             _json("print a JSON list"))),
    Verb("prune", "remove finished jobs older than a duration (records and run folders)",
         "--older-than D [--state S]... [--dry-run]",
         ("prune --older-than 30d --state succeeded --state cancelled",), args=(
             arg("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h, 90m, 45s, 2w"),
             arg("--state", action="append", help="only jobs in this final state (repeatable)"),
             arg("--dry-run", action="store_true", help="only count what would be removed"),
             _json("print the pruned IDs as JSON"))),
    Verb("retention", "show or set the default retention that workers apply", "[DURATION | off]",
         ("retention 30d", "retention off"), sides=(CLI,), args=(
             arg("value", nargs="?", help="a duration such as 30d, or 'off'"),)),
    Verb("panel", "a live table of recent jobs (counts, progress, actions) that updates itself",
         "[--state S] [--name N] [--tag T] [--limit N]", ("panel --state active",), sides=(MAGIC,), args=(
             arg("--state", default=None, help="all (default), active, a state, or several: failed,timed_out"),
             *_LIST_FILTERS, arg("--limit", type=int, default=20, help="at most this many rows (default 20)"))),
    Verb("metrics", "service-level indicators per job name (runs, success rate, runtime percentiles, queue depth), "
                    "or Prometheus metrics", "[--window 7D] [--by name|kind|priority|none] [--freq 1h]",
         ("metrics --window 24h", "metrics --by none --freq 1h", "metrics --format prometheus",
          "metrics --serve --port 9464"), magic_examples=("metrics --window 24h --freq 1h",), args=(
             arg("--window", default="7D", metavar="DURATION", help="how far back to look (default 7D; e.g. 24h, 30D)"),
             arg("--by", default="name", choices=("name", "kind", "priority", "none"),
                 help="one row per job name (default), kind, priority, or none (all jobs together)"),
             arg("--freq", metavar="DURATION", help="also one row per time bucket of this size (e.g. 1h, 1D)"),
             arg("--format", default="table", choices=("table", "csv", "json", "prometheus"), sides=(CLI,),
                 help="table (default), csv, json (a list of rows), or the Prometheus text exposition"),
             arg("--serve", action="store_true", sides=(CLI,),
                 help="serve the Prometheus metrics at http://127.0.0.1:PORT/metrics (this machine only) until Ctrl-C"),
             arg("--port", type=int, default=9464, sides=(CLI,),
                 help="port for --serve (default 9464; 0 picks a free one)"))),
    Verb("schedule", "cron schedules: add, ls, show, pause, resume, rm, run-now, backfill (each fire submits an "
                     "ordinary job)",
         "add NAME CRON NOTEBOOK|-c CODE [options] | ls | show NAME | pause NAME | resume NAME | rm NAME "
         "| run-now NAME | backfill NAME --from WHEN --to WHEN",
         ('schedule add daily-report "30 6 * * 1-5" report.ipynb -p n 7 --tz Europe/Berlin', "schedule ls",
          "schedule show daily-report", "schedule run-now daily-report",
          "{cmd} schedule pause daily-report; {cmd} schedule resume daily-report; {cmd} schedule rm daily-report"),
         magic_examples=('schedule add daily "30 6 * * 1-5" report.ipynb -p n 7 --tz Europe/Berlin',),
         actions=_SCHEDULE_ACTIONS),
    Verb("notify-default", "show or set the home's default webhook, POSTed when any job ends",
         "[URL] [--secret-env NAME] [--on end|all|failure] [--off]",
         ("notify-default https://hooks.example.com/nbjobs --secret-env NBJOBS_WEBHOOK_SECRET",
          "notify-default --off"), sides=(CLI,), args=(
             arg("url", nargs="?", help="http(s) URL"),
             arg("--secret-env", metavar="NAME", help="environment variable (of the worker) holding the HMAC "
                                                      "signing secret; the value is never stored"),
             arg("--on", choices=NOTIFY_ON,
                 help="end (final states, default), all (every state change) or failure (only failed or timed out)"),
             arg("--off", action="store_true", help="remove the default webhook"))),
    Verb("worker", "run a worker in the foreground; Ctrl-C stops it cleanly",
         "[--concurrency N] [--kernels fork|pool|cold] [--preload MODULES] [--pool N]",
         ("worker --concurrency 2 --pool 4", "worker --preload pandas,numpy", "worker --kernels pool",
          "worker --executor dask --scheduler tcp://scheduler.example.org:8786"),
         sides=(CLI,), args=(
             arg("--concurrency", type=int, help="jobs run at once (default 1; with --executor dask, the "
                                                 "cluster's threads)"),
             arg("--kernels", choices=("fork", "pool", "cold"),
                 help="how each job gets its fresh kernel: fork (from a zygote that imported ipykernel and the "
                 "--preload modules once; the default on Linux, for kernelspecs of this Python; other kernels take "
                 "the pool), pool (warm kernels started ahead), cold (started with the job); env NBJOBS_KERNELS"),
             arg("--preload", metavar="MODULES", help="modules every job's kernel has imported before the job, e.g. "
                 "pandas,numpy (imported once in the zygote with --kernels fork); env NBJOBS_PRELOAD"),
             arg("--pool", type=int, metavar="N", help="kernels kept started ahead of need, each used by one job "
                 "only (default: one per --concurrency slot, two with --kernels fork; env NBJOBS_POOL_SIZE; with "
                 "--executor dask: per Dask "
                 "worker, default one per worker thread)"),
             arg("--no-warm", action="store_true", help="start every job's kernel when the job starts (the cold "
                 "path; same as --kernels cold)"),
             arg("--executor", choices=("local", "dask"),
                 help="where jobs run: local processes or a Dask cluster (default $NBJOBS_EXECUTOR or local)"),
             arg("--scheduler", metavar="ADDRESS", help="the Dask scheduler, e.g. tcp://host:8786 (default "
                 "$NBJOBS_SCHEDULER; none: a LocalCluster sized to this machine)"),
             arg("--idle-exit", type=float, help="exit after this many idle seconds (default: never)"),
             arg("--grace", type=float, help="seconds running jobs get to finish when stopping (default 10)"),
             arg("--autostarted", action="store_true", help=argparse.SUPPRESS))),
    Verb("demo", "submit a few demo jobs, run them, print the table", "[--home DIR]", ("demo",), sides=(CLI,),
         args=(arg("--home", help="nbjobs home for the demo (default: a new temporary folder)"),)),
    Verb("help", "this list, or one verb's options", "[VERB]", ("help run",), sides=(MAGIC,),
         args=(arg("verb", nargs="?", help="a verb"),)),
)

__all__ = ["CLI", "MAGIC", "CELL", "Arg", "arg", "Verb", "VERBS", "CELL_OPTIONS", "verbs", "find", "words",
           "example", "add_arguments", "build", "job_kwargs", "sweep_kwargs"]
