"""Wake-ups: a submit tells idle workers at once instead of waiting for their next poll.

Each worker binds a datagram socket in Linux's abstract namespace (no file, gone when the process
is), named after its home's database and a slot number.  `poke` sends one empty datagram to each
slot of the home (about 2 µs per slot, nothing at all if no worker listens).  A worker that gets
no slot, or a system without abstract sockets, falls back to its periodic check of SQLite's
``data_version``: wake-ups make pick-up fast, never correct.

>>> sock = listen("/tmp/nbjobs-doc/nbjobs.db")
>>> poke("/tmp/nbjobs-doc/nbjobs.db")
>>> sock is None or sock.recv(16) == b""
True
"""
from __future__ import annotations

import hashlib
import os
import socket
import sys

SLOTS = 16


def _name(db_path: str | os.PathLike, slot: int) -> bytes:
    digest = hashlib.sha1(os.path.abspath(os.fspath(db_path)).encode()).hexdigest()[:20]
    return f"\0nbjobs-{digest}-{slot}".encode()


def listen(db_path: str | os.PathLike) -> socket.socket | None:
    """A non-blocking socket that receives this home's pokes (``None`` if every slot is taken or
    the platform has no abstract sockets)."""
    if not sys.platform.startswith("linux"):
        return None
    for slot in range(SLOTS):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(_name(db_path, slot))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        return sock
    return None


_sender: tuple[int, socket.socket] | None = None
_names: dict[str, list[bytes]] = {}


def poke(db_path: str | os.PathLike) -> None:
    """Wake every worker listening on this home (best effort, never raises)."""
    global _sender
    if not sys.platform.startswith("linux"):
        return
    key = os.fspath(db_path)
    names = _names.get(key)
    if names is None:
        names = _names[key] = [_name(db_path, slot) for slot in range(SLOTS)]
    if _sender is None or _sender[0] != os.getpid():  # one socket per process (and per fork)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        _sender = (os.getpid(), sock)
    send = _sender[1].sendto
    for name in names:
        try:
            send(b"", name)
        except OSError:  # nobody on that slot, or its queue is full (it is awake anyway)
            continue


def drain(sock: socket.socket) -> int:
    """Read every pending poke; returns how many there were."""
    n = 0
    while True:
        try:
            sock.recv(16)
        except (BlockingIOError, InterruptedError):
            return n
        n += 1
