"""Signalling processes safely: every kill goes through a `Proc`, which names one process (its pid
*and* its start time) and so cannot outlive it.

A remembered bare pid is not a process: once that process has exited and been reaped, the kernel
hands the number to the next process that starts (``pid_max`` is 32768 on many machines, so pids
wrap within an hour of busy work), and ``kill(pid)`` or ``killpg(getpgid(pid))`` then ends a new
warm kernel, or someone else's program.  A `Proc` is taken while the process is known to be alive
(our own child before we reaped it, or a pid its parent just reported), remembers its start time
from ``/proc/PID/stat``, and signals through a pidfd (Linux >= 5.3) opened and checked against
that start time first: a pidfd refers to one process for good, so the signal reaches that process
or nobody.

Process groups: a kernel runs in a session (and group) of its own, created for it by
jupyter_client at our request.  `Proc.kill` with ``group=True`` signals the group only while its
leader is verifiably the process we started (checked through the pidfd just before), so the
group is the one we created and never a stranger's.

>>> import os
>>> me = Proc.of(os.getpid())
>>> me.alive(), me == Proc.of(os.getpid())
(True, True)
>>> Proc.of(0) is None
True
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state letter, start time) of process ``pid`` from ``/proc/PID/stat``, None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot, field 22 of ``/proc/PID/stat``),
    or None if there is no such process.  A zombie (ended, not yet reaped) still has one: its pid
    is not free for another process until its parent reaps it."""
    stat = _stat(pid)
    return stat[1] if stat else None


@dataclass(frozen=True)
class Proc:
    """One process: ``pid`` and ``start`` (see `start_time`).  JSON-friendly as ``[pid, start]``."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: Any) -> "Proc | None":
        """The process that has ``pid`` now (None if none does).  Take it while you know the pid is
        the one you mean: a child not yet reaped, or a pid its parent just reported."""
        if not isinstance(pid, int) or pid <= 0:
            return None
        stat = _stat(pid)
        return cls(pid, stat[1]) if stat and stat[0] not in (b"Z", b"X") else None

    @classmethod
    def load(cls, value: Any) -> "Proc | None":
        """From `dump`'s ``[pid, start]`` (None for anything else)."""
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return cls(value[0], value[1])
        return None

    def dump(self) -> list[int]:
        return [self.pid, self.start]

    def alive(self) -> bool:
        """Still running (not ended, not a zombie)."""
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.start and stat[0] not in (b"Z", b"X")

    def signal(self, sig: int = signal.SIGKILL, *, group: bool = False) -> bool:
        """Send ``sig`` to this process (and, with ``group``, to the process group it leads).
        Returns False, doing nothing, when the process has ended."""
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return False
        except (AttributeError, OSError):  # no pidfd here (Linux < 5.3): check, then signal by pid
            fd = None
        try:
            if start_time(self.pid) != self.start:  # the pid now names another process
                return False
            if group and os.getpgid(self.pid) == self.pid:  # a group this process leads: ours
                os.killpg(self.pid, sig)
            elif fd is not None:
                signal.pidfd_send_signal(fd, sig)
            else:
                os.kill(self.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False
        finally:
            if fd is not None:
                os.close(fd)

    def kill(self, *, group: bool = True) -> bool:
        """SIGKILL this process and (by default) the group it leads."""
        return self.signal(signal.SIGKILL, group=group)


def workers_starting(home: os.PathLike | str, *, autostarted: bool = False) -> list[int]:
    """Pids of ``nbjobs worker`` commands started on purpose (not ``--autostarted``; with
    ``autostarted``, only those nbjobs started on its own) for ``home`` that run now, read from
    ``/proc``: a worker counts from the moment its command starts, before it has imported anything
    or registered in SQLite (see `nbjobs.worker.Worker`).  Only this user's processes; ``[]`` where
    ``/proc`` cannot be read."""
    from pathlib import Path

    home = Path(home).expanduser().absolute()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    me = os.getuid()
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != me:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            at = next((i for i, a in enumerate(argv) if a == b"nbjobs" or a.endswith(b"/nbjobs")), None)
            if at is None or argv[at + 1:at + 2] != [b"worker"] or (b"--autostarted" in argv) != autostarted:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except (OSError, ValueError):
            continue
        theirs = env.get(b"NBJOBS_HOME")
        path = Path(os.fsdecode(theirs)).expanduser() if theirs else Path(os.fsdecode(env.get(b"HOME", b"/"))) / ".nbjobs"
        if path.is_absolute() and path == home:
            found.append(int(entry))
    return found
