"""The job lifecycle, job-ID rules and code hashes (nbjobs/job.py)."""
from __future__ import annotations

import hashlib
import itertools
import os
import re
import uuid

import pytest

from nbjobs.errors import BadInput, IllegalTransition, NbjobsError
from nbjobs.job import (ACTIVE, CLAIMABLE, ENDED_BADLY, RETRYABLE, TERMINAL, TRANSITIONS, DependencyOutcome,
                        JobRecord, State, check_transition, code_hash, dependency_outcome, new_id, normalize_prefix,
                        short_id, sources_of)

S = State

#: the lifecycle of docs/architecture.md, written out independently of nbjobs.job.TRANSITIONS
LEGAL = {
    (S.WAITING, S.QUEUED), (S.WAITING, S.CANCELLED),
    (S.QUEUED, S.RUNNING), (S.QUEUED, S.CANCELLED),
    (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.TIMED_OUT), (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.RETRYING), (S.RUNNING, S.QUEUED),
    (S.RETRYING, S.RUNNING), (S.RETRYING, S.CANCELLED),
    (S.FAILED, S.QUEUED), (S.TIMED_OUT, S.QUEUED), (S.CANCELLED, S.QUEUED),
    # a retried job with upstream jobs (`after`) waits for them again
    (S.FAILED, S.WAITING), (S.TIMED_OUT, S.WAITING), (S.CANCELLED, S.WAITING),
}
ALL_PAIRS = list(itertools.product(State, State))
ILLEGAL = [p for p in ALL_PAIRS if p not in LEGAL]


def test_state_values_are_what_sqlite_stores():
    assert [s.value for s in State] == ["waiting", "queued", "running", "retrying", "succeeded", "failed",
                                       "timed_out", "cancelled"]
    assert str(S.TIMED_OUT) == "timed_out"
    assert S("running") is S.RUNNING
    assert S.RUNNING == "running"  # a str enum compares equal to its value


def test_terminal_and_active_sets():
    assert TERMINAL == {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED}
    assert ACTIVE == {S.WAITING, S.QUEUED, S.RUNNING, S.RETRYING}
    assert TERMINAL.isdisjoint(ACTIVE) and TERMINAL | ACTIVE == set(State)
    for s in State:
        assert s.terminal == (s in TERMINAL)
        assert s.active == (s not in TERMINAL)
    assert set(CLAIMABLE) == {S.QUEUED, S.RETRYING}
    assert set(RETRYABLE) == {S.FAILED, S.TIMED_OUT, S.CANCELLED}


def test_transition_table_matches_the_design():
    table = {(old, new) for old, targets in TRANSITIONS.items() for new in targets}
    assert table == LEGAL
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[S.SUCCEEDED] == frozenset()  # a success is final: nothing leaves it


@pytest.mark.parametrize("old,new", sorted(LEGAL), ids=lambda s: s.value)
def test_legal_transitions_pass(old, new):
    assert check_transition(old, new) is None
    assert check_transition(old.value, new.value) is None  # plain strings from SQLite work too


@pytest.mark.parametrize("old,new", ILLEGAL, ids=lambda s: s.value)
def test_illegal_transitions_raise(old, new):
    with pytest.raises(IllegalTransition) as info:
        check_transition(old, new)
    assert str(info.value) == f"a {old.value} job cannot become {new.value}"
    assert isinstance(info.value, NbjobsError)
    with pytest.raises(IllegalTransition):
        check_transition(old.value, new.value)


def test_illegal_count_and_samples():
    assert len(ILLEGAL) == 64 - 18
    for pair in [(S.SUCCEEDED, S.RUNNING), (S.SUCCEEDED, S.QUEUED), (S.QUEUED, S.SUCCEEDED),
                 (S.WAITING, S.RUNNING), (S.RETRYING, S.SUCCEEDED), (S.FAILED, S.RUNNING), (S.RUNNING, S.RUNNING)]:
        assert pair in ILLEGAL


def test_unknown_state_is_rejected():
    with pytest.raises(ValueError):
        check_transition("queued", "paused")
    with pytest.raises(ValueError):
        check_transition("done", "queued")


def test_sources_of():
    assert set(sources_of("queued")) == {"waiting", "running", "failed", "timed_out", "cancelled"}
    assert set(sources_of(S.RUNNING)) == {"queued", "retrying"}
    assert set(sources_of("succeeded")) == {"running"}
    assert set(sources_of("waiting")) == {"failed", "timed_out", "cancelled"}
    assert all(isinstance(s, str) and not isinstance(s, State) for s in sources_of("cancelled"))


# --- the dependency outcome (what a waiting job does, decided without SQL) -------------------------
A, B, C = "aa" * 16, "bb" * 16, "cc" * 16


def ups(*states, names="xyz"):
    """Upstream jobs A, B, C (in that order) in these states."""
    return [(uid, name, state) for uid, name, state in zip((A, B, C), names, states)]


def test_dependency_outcome_runs_once_every_upstream_succeeded():
    out = dependency_outcome(ups("succeeded", S.SUCCEEDED))
    assert out == DependencyOutcome(S.QUEUED, None, "upstream aaaaaaaa, bbbbbbbb ended")
    assert dependency_outcome(ups("succeeded", "succeeded"), after_any=True).state is S.QUEUED


@pytest.mark.parametrize("other", [s for s in State if s.active])
def test_dependency_outcome_keeps_waiting_while_an_upstream_is_active(other):
    assert dependency_outcome(ups("succeeded", other)) == DependencyOutcome(None)
    assert dependency_outcome(ups("failed", other), after_any=True) == DependencyOutcome(None)


@pytest.mark.parametrize("bad", sorted(ENDED_BADLY))
def test_dependency_outcome_cancels_naming_the_upstream_that_ended_badly(bad):
    out = dependency_outcome(ups("running", bad, "succeeded"))  # at once, while another still runs
    assert out.state is S.CANCELLED and out.reason == "dependency_failed"
    assert out.message == f"upstream job bbbbbbbb (y) ended {bad.value}"


def test_dependency_outcome_names_the_first_bad_upstream_in_the_given_order():
    assert dependency_outcome(ups("cancelled", "failed")).message == "upstream job aaaaaaaa (x) ended cancelled"
    assert dependency_outcome(ups("succeeded", "timed_out", "failed")).message.startswith("upstream job bbbbbbbb")


@pytest.mark.parametrize("ended", sorted(TERMINAL))
def test_dependency_outcome_after_any_runs_once_every_upstream_ended(ended):
    out = dependency_outcome(ups("succeeded", ended), after_any=True)
    assert out == DependencyOutcome(S.QUEUED, None, "upstream aaaaaaaa, bbbbbbbb ended")


def test_dependency_outcome_table():
    """Every pair of upstream states, both modes, against the rule written out independently."""
    for a, b in itertools.product(State, State):
        for after_any in (False, True):
            out = dependency_outcome(ups(a, b), after_any)
            if not after_any and ({a, b} & {S.FAILED, S.TIMED_OUT, S.CANCELLED}):
                expected = S.CANCELLED
            elif {a, b} <= ({S.SUCCEEDED} | (TERMINAL if after_any else set())):
                expected = S.QUEUED
            else:
                expected = None
            assert out.state is expected, (a, b, after_any)
            assert (out.reason == "dependency_failed") == (expected is S.CANCELLED)


def test_dependency_outcome_of_an_expired_upstream_without_a_name():
    out = dependency_outcome([(A, None, "cancelled")])  # the store reads a vanished upstream as cancelled
    assert out.message == "upstream job aaaaaaaa (None) ended cancelled"
    with pytest.raises(ValueError):
        dependency_outcome([(A, "x", "paused")])


# --- IDs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("8F3A-2C", "8f3a2c"),
    ("  abc  ", "abc"),
    ("0", "0"),
    ("12345678-1234-4abc-9def-0123456789ab", "1234567812344abc9def0123456789ab"),
    ("ABCDEF0123456789ABCDEF0123456789", "abcdef0123456789abcdef0123456789"),
])
def test_normalize_prefix_accepts(text, expected):
    assert normalize_prefix(text) == expected


def test_normalize_prefix_accepts_a_uuid_string():
    u = uuid.uuid4()
    assert normalize_prefix(str(u)) == u.hex


@pytest.mark.parametrize("bad", ["", "   ", "-", "xyz", "8f3g", "8f 3a", "0x8f", "8f3a!", "é",
                                 "a" * 33, "0123456789abcdef0123456789abcdef0", None])
def test_normalize_prefix_rejects(bad):
    with pytest.raises(BadInput) as info:
        normalize_prefix(bad)
    msg = str(info.value)
    assert f"'{bad}' is not a job ID" in msg
    assert "nbjobs ls" in msg  # says what to do next


def test_new_id_is_32_lowercase_hex_uuid4_and_unique():
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    for i in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", i), i
        assert uuid.UUID(hex=i).version == 4
    # not sequential: consecutive IDs do not share a long common prefix
    shared = [len(os.path.commonprefix([a, b])) for a, b in zip(ids, ids[1:])]
    assert max(shared) < 12


def test_short_id():
    assert short_id("0123456789abcdef0123456789abcdef") == "01234567"
    rec = JobRecord(id="fedcba9876543210fedcba9876543210", name="n", kind="cell", state=S.QUEUED)
    assert rec.short_id == "fedcba98"


def test_code_hash_of_a_cell():
    assert code_hash("cell", source="1 + 1") == "72fce59447a01f48"
    src = "import math\nprint(math.pi)\n"
    assert code_hash("cell", source=src) == hashlib.sha256(src.encode()).hexdigest()[:16]
    assert code_hash("cell", source="x = 1") != code_hash("cell", source="x = 2")
    assert code_hash("cell", source=None) == hashlib.sha256(b"").hexdigest()[:16]
    assert code_hash("cell", source="é") == hashlib.sha256("é".encode("utf-8")).hexdigest()[:16]


def test_code_hash_of_a_notebook_is_of_its_bytes(tmp_path):
    nb = tmp_path / "a.ipynb"
    nb.write_bytes(b'{"cells": [], "nbformat": 4}')
    h1 = code_hash("notebook", notebook=str(nb))
    assert h1 == hashlib.sha256(b'{"cells": [], "nbformat": 4}').hexdigest()[:16]
    assert len(h1) == 16
    nb.write_bytes(b'{"cells": [],  "nbformat": 4}')  # one more space: a different notebook
    assert code_hash("notebook", notebook=str(nb)) != h1
    with pytest.raises(FileNotFoundError):
        code_hash("notebook", notebook=str(tmp_path / "missing.ipynb"))


def test_job_record_helpers():
    rec = JobRecord(id="ab" * 16, name="n", kind="notebook", state=S.SUCCEEDED, retries=2,
                    started_at=90.0, began_at=100.0, finished_at=112.5, tags=["x"], attempts=1)
    assert rec.max_attempts == 3 and rec.attempt_text == "1 of 3"
    assert rec.runtime == 12.5  # from the first cell of the job's code, not from the claim
    retried = JobRecord(id="a", name="n", kind="cell", state=S.RUNNING, attempts=2, budget_from=1)
    assert (retried.max_attempts, retried.attempt_text) == (2, "2")  # never "2 of 1"
    assert JobRecord(id="a", name="n", kind="cell", state=S.QUEUED).attempt_text == "-"
    d = rec.to_dict()
    assert d["state"] == "succeeded" and type(d["state"]) is str
    assert d["tags"] == ["x"] and d["id"] == "ab" * 16
    assert JobRecord(id="a", name="n", kind="cell", state=S.RUNNING, started_at=1.0).runtime is None
