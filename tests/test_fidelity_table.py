"""docs/fidelity.md is generated from the profiles and must match them (issue 40)."""

from __future__ import annotations

from cgd.rehearsal import fidelity as F


def test_the_committed_table_is_the_generated_one():
    assert F.main(check=True) == 0, "docs/fidelity.md is stale: run python -m cgd fidelity"


def test_each_profile_holds_what_the_table_claims():
    values = {p: F.profile_params(p) for p in F.PROFILES}
    for s in F.SETTINGS:
        status, _, reasons = F.evaluate(s, values)
        if s.key is None:
            assert status in (F.MATCH, F.REASON, F.STILL) and s.ours, s.name
            continue
        for p in F.PROFILES:
            got = F.keys.lookup(values[p], s.key)
            assert F.same(got, s.want(p)) or s.reason(p), f"{p}: {s.key} = {got!r}, the table claims {s.want(p)!r}"
        if status == F.MATCH:
            assert not reasons


def test_a_profile_that_drifts_is_caught():
    values = {p: F.profile_params(p) for p in F.PROFILES}
    probe = next(s for s in F.SETTINGS if s.key == "rollout.prompt_set")
    assert F.evaluate(probe, values)[0] == F.MATCH
    values["olmo-webinstruct"]["rollout"]["prompt_set"] = "ours"
    assert F.evaluate(probe, values)[0] == F.STILL
    ctx = next(s for s in F.SETTINGS if s.key == "student.max_model_len")
    assert F.evaluate(ctx, values)[0] == F.REASON  # s1 and OLMo depart, each with its reason


def test_numbers_compare_by_value():
    assert F.same("1e-06", 1.0e-6) and F.same(8192, 8192.0) and not F.same(True, 1) and not F.same("a", 1)
