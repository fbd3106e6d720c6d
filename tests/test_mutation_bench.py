"""The mutation score is counted honestly: an equivalent mutant counts only while it is the
mutant that was checked, a killed one on the list is flagged, timeouts count as caught."""

from __future__ import annotations

import pytest

from bench import mutation

A = "worker.core.states.x_state_for__mutmut_1"
B = "worker.core.states.x_state_for__mutmut_2"
C = "worker.core.urls.x_redact__mutmut_3"


@pytest.fixture()
def listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mutation, "EQUIVALENT", {
        A: ("p = cast(None, q)", "why A"), B: ("zip(a, b, strict=None)", "why B"),
        C: ("x + 1", "why C")})
    # B's mutant now reads otherwise (renumbered after an edit); C is killed.
    lines = {A: "p = cast(None, q)", B: "zip(a, b, strict=False)", C: "x + 1"}
    monkeypatch.setattr(mutation, "mutated_lines", lambda name: lines[name])


@pytest.mark.usefixtures("listed")
def test_only_equivalents_that_still_read_as_listed_count() -> None:
    statuses = {A: "survived", B: "survived", C: "killed",
                "worker.core.states.x_state_for__mutmut_4": "timeout",
                "worker.core.states.x_state_for__mutmut_5": "killed"}
    good, wrong = mutation.check_equivalents(statuses)
    assert good == {A}
    assert [line.split(":")[0] for line in wrong] == [B, C]
    assert "killed, so not equivalent" in wrong[1]
    rows, overall = mutation.score_table(statuses, good)
    # states: 4 mutants, A equivalent: killed 1 + timeout 1 of the other 3.
    assert rows[0] == ["worker.core.states", 4, 1, 1, 1, 1, "66.7%"]
    assert rows[1] == ["worker.core.urls", 1, 1, 0, 0, 0, "100.0%"]
    assert overall == pytest.approx(75.0)


def test_one_module_at_a_time() -> None:
    assert mutation.module_pattern("worker/observe/delivery.py") == "worker.observe.delivery.x*"
    for bad in ("worker/observe/record.lua", "bench/mutation.py", "delivery"):
        with pytest.raises(SystemExit):
            mutation.module_pattern(bad)


@pytest.mark.usefixtures("listed")
def test_a_run_of_one_module_checks_only_its_equivalents() -> None:
    statuses = {A: "survived", B: "survived"}
    good, wrong = mutation.check_equivalents(statuses, ["worker.core.states.x*"])
    assert good == {A} and [line.split(":")[0] for line in wrong] == [B]
    good, wrong = mutation.check_equivalents({}, ["worker.observe.delivery.x*"])
    assert good == set() and wrong == []


def test_every_lua_script_has_a_mutation_whose_text_is_there_once() -> None:
    from bench import lua_mutations

    scripts = sorted(p.relative_to(lua_mutations.REPO).as_posix()
                     for p in (lua_mutations.REPO / "worker").rglob("*.lua"))
    mutated = {m.script for m in lua_mutations.MUTATIONS}
    assert [s for s in scripts if s not in mutated] == [], (
        "Lua scripts without a hand mutation of their key promise in bench/lua_mutations.py")
    assert sorted(mutated) == scripts  # and none listed that is gone
    for m in lua_mutations.MUTATIONS:
        text = (lua_mutations.REPO / m.script).read_text(encoding="utf-8")
        assert text.count(m.old) == 1, m.promise
        assert m.tests and all((lua_mutations.REPO / t).exists() for t in m.tests), m.promise
