"""Errors raised by nbjobs.  Every message says what to do next.

>>> raise UnknownJob("no job matches 'zz'; list jobs with `nbjobs ls`")
Traceback (most recent call last):
...
nbjobs.errors.UnknownJob: no job matches 'zz'; list jobs with `nbjobs ls`
"""


class NbjobsError(Exception):
    """Base class of every error nbjobs raises on purpose (bad input, bad state, bad store)."""


class BadInput(NbjobsError, ValueError):
    """A value given by the user (path, parameter, option) is not usable."""


class UnknownJob(NbjobsError, LookupError):
    """No job has this ID or ID prefix."""


class AmbiguousJob(NbjobsError, LookupError):
    """An ID prefix matches more than one job."""


class ExpiredJob(NbjobsError, LookupError):
    """The job existed but its record was pruned by retention."""


class IllegalTransition(NbjobsError):
    """A state change that the job lifecycle does not allow (e.g. cancel a finished job)."""


class StoreError(NbjobsError):
    """The SQLite store cannot be opened, read or written."""


class WaitTimeout(NbjobsError, TimeoutError):
    """`wait` gave up before the job(s) reached a final state."""

