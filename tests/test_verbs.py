"""The one verb table (nbjobs/verbs.py): ``nbjobs VERB`` and ``%job VERB`` are built from it and
cannot drift; and the one detail view of a job (nbjobs/text.py).  Fast: no kernels, no workers."""
from __future__ import annotations

import argparse

import pytest

import nbjobs
from nbjobs import cli, magics, text, verbs


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")}


def _cli_parsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_verb_has_help_an_example_and_a_handler_on_each_of_its_sides():
    cli_parsers = _cli_parsers()
    for verb in verbs.VERBS:
        assert verb.help and verb.examples, verb.name
        if verbs.CLI in verb.sides:
            assert callable(cli._handler(verb)), verb.name
            assert "example:" in cli_parsers[verb.name].format_help()
        else:
            assert verb.name not in cli_parsers, verb.name
        if verbs.MAGIC in verb.sides:
            assert callable(getattr(magics.JobMagics, "_" + verb.func)), verb.name
            assert "example:" in magics.PARSERS[verb.name].format_help()
        else:
            assert verb.name not in magics.PARSERS, verb.name


def test_one_name_one_meaning_show_and_its_alias_status_on_both_sides():
    cli_parsers = _cli_parsers()
    assert cli_parsers["status"] is cli_parsers["show"]
    assert magics.PARSERS["status"] is magics.PARSERS["show"]
    assert verbs.find("status", verbs.CLI) is verbs.find("show", verbs.MAGIC)
    # one-sided verbs are marked in the table
    assert verbs.find("worker", verbs.MAGIC) is None and verbs.find("demo", verbs.MAGIC) is None
    assert verbs.find("pull", verbs.CLI) is None and verbs.find("panel", verbs.CLI) is None


def test_a_verb_on_both_sides_takes_the_same_options_except_those_marked_for_one_side():
    cli_parsers = _cli_parsers()
    for verb in verbs.verbs(verbs.CLI):
        if verbs.MAGIC not in verb.sides or verb.actions:
            continue
        cli_only = {f for a in verb.args if a.sides == (verbs.CLI,) for f in a.flags if f.startswith("-")}
        magic_only = {f for a in verb.args if verbs.CLI not in a.sides for f in a.flags if f.startswith("-")}
        cli_opts, magic_opts = _options(cli_parsers[verb.name]), _options(magics.PARSERS[verb.name])
        assert cli_opts - cli_only == magic_opts - magic_only, verb.name


def test_the_cell_magic_and_run_share_their_job_options():
    cell = _options(magics.JobMagics.job_cell.parser)
    run = _options(magics.PARSERS["run"])
    assert cell - {"--in", "--out"} == run
    assert {"--retries", "--after", "--secret", "--quiet", "--wait", "--resources"} <= cell


def test_the_detail_view_of_a_cell_job_without_source_does_not_break(home, store):
    rec, _ = store.insert_job({"name": "empty", "kind": "cell", "source": ""}, actor="test")
    shown = text.job_detail(nbjobs.get(rec.id, home=home))
    assert shown.startswith(f"{rec.short_id} empty: queued") and f"id:         {rec.id}" in shown
    assert "kind:       cell:  ..." in shown


@pytest.mark.parametrize("seconds,precise,expected", [(7.44, False, "7s"), (7.44, True, "7.4s"), (184, False, "3m04s"),
                                                      (7500, True, "2h05m"), (None, True, "-")])
def test_durations(seconds, precise, expected):
    assert text.fmt_duration(seconds, precise=precise) == expected


def test_search_is_one_verb_on_both_sides_with_the_same_options():
    cli_parsers = _cli_parsers()
    verb = verbs.find("search", verbs.CLI)
    assert verb is verbs.find("search", verbs.MAGIC) and verb.sides == verbs.BOTH
    assert _options(cli_parsers["search"]) == {"--limit", "--json"}
    assert _options(magics.PARSERS["search"]) == {"--limit"}
    assert cli_parsers["search"].parse_args(["KeyError", "--limit", "5"]).query == "KeyError"
