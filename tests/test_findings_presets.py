"""Findings about the preset itself (issue 26): a nice boost that autogroup makes void, and
real-time lost mid-request. Pure rules on hand-made breakdowns; the read-back keys they read are
the ones Tuner.readback() and Tuner.rt_request give (checked against a real Tuner at the end)."""
from __future__ import annotations

from breakdown_samples import contended, healthy
from tracing import findings as F
from tuning.apply import Tuner
from tuning.presets import load_presets
from tuning.rtbudget import RtGrant


def kinds(items):
    return [f["kind"] for f in items]


def only(items, kind):
    found = [f for f in items if f["kind"] == kind]
    assert len(found) == 1, kinds(items)
    return found[0]


SHELL = {"preset": "priority", "nice": -10, "policy": "other", "autogroup_nice": 0, "autogroup_owned": False}


def test_nice_inert_warns_when_other_sessions_held_the_cpu():
    out = F.findings(contended(), {"preset": SHELL})
    f = only(out, F.NICE_INERT)
    assert f["severity"] == "warn"
    assert "setsid" in f["message"] and "nice -10" in f["message"] and "priority" in f["message"]
    assert f["evidence"]["outside_blockers_s"] > 0 and f["evidence"]["autogroup_owned"] is False


def test_nice_inert_is_info_when_nothing_competed():
    f = only(F.findings(healthy(), {"preset": SHELL}), F.NICE_INERT)
    assert f["severity"] == "info"


def test_nice_inert_not_said_when_the_nice_can_act():
    for p in ({**SHELL, "autogroup_owned": True, "autogroup_nice": -10},  # own session: group niced too
              {**SHELL, "autogroup_nice": None},                           # autogroup off
              {**SHELL, "nice": 0},                                        # no boost asked
              {**SHELL, "nice": "mixed"}):                                 # threads differ: not this rule's case
        assert F.NICE_INERT not in kinds(F.findings(contended(), {"preset": p})), p


def test_rt_demoted_is_critical_and_says_what_to_change():
    p = {"preset": "realtime", "policy": "fifo", **RtGrant(4.5, 1.5, "observed", True).to_readback()}
    f = only(F.findings(healthy(), {"preset": p}), F.RT_DEMOTED)
    assert f["severity"] == "crit"
    assert "rt_budget_s" in f["message"] and "4.50 s" in f["message"] and "SCHED_OTHER" in f["message"]
    assert f["evidence"]["rt_budget_source"] == "observed"


def test_rt_not_demoted_says_nothing():
    p = {"preset": "realtime", "policy": "fifo", **RtGrant(4.5, 1.5, "observed", False).to_readback()}
    assert F.RT_DEMOTED not in kinds(F.findings(healthy(), {"preset": p}))
    assert F.RT_DEMOTED not in kinds(F.findings(healthy(), {"preset": {"preset": "default"}}))


def test_readback_carries_what_the_rules_read():
    """The keys come from the real tuner (so a rename there cannot silently mute the rules)."""
    t = Tuner(load_presets(), knob_state_dir=None)
    rb = t.readback()
    assert {"nice", "autogroup_nice", "autogroup_owned", "rt_demoted"} <= set(rb)
    with t.rt_request(10) as g:
        pass
    assert set(g.to_readback()) == {"rt_budget_s", "rt_budget_source", "rt_demoted"}
