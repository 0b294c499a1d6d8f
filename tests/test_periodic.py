"""app/periodic.py: the idle gate (scripted busy states, a fake clock) and a failed run leaving
nothing in the series. The live path (a launcher, /metrics, the CLI) is in tests/test_periodic_live.py."""
import pytest

from app.periodic import IdleGate, snapshot_into_series
from tracing.series import Series, load_series
from tracing.snapshot import SnapshotError


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def gate(states, **kw):
    clock, it = Clock(), iter(states)
    g = IdleGate(lambda: next(it), clock=clock, sleep=clock.sleep, poll_s=0.1, settle_s=0.3, **kw)
    return g, clock


def test_idle_service_is_probed_after_the_settle_time_only():
    g, clock = gate([False] * 10)
    g.wait()
    assert g.waits == 0 and g.waited_s == 0 and abs(clock.t - 0.3) < 1e-9
    assert "idle before every probe" in g.note()


def test_busy_service_is_waited_for_and_said_so():
    g, clock = gate([True] * 20 + [False, True] + [False] * 10)  # 2 s busy, a blip, then idle
    g.wait()
    assert g.waits == 1 and 2.4 < g.waited_s < 2.6
    assert "waited 2.5 s in all, 1 time(s)" in g.note()
    assert g.to_dict()["waits"] == 1


def test_busy_for_too_long_gives_up_and_unknown_is_said():
    g, _ = gate([True] * 100, timeout_s=5)
    with pytest.raises(SnapshotError, match="stayed busy for 5 s"):
        g.wait()
    g, _ = gate([None])
    g.wait()
    assert g.unknown and "unknown" in g.note()


def test_failed_run_leaves_nothing_in_the_series(tmp_path):
    s = Series(tmp_path / "series")

    def run(dest):
        dest.mkdir()
        (dest / "half").write_text("x")
        raise SnapshotError("service busy")

    with pytest.raises(SnapshotError):
        snapshot_into_series(s, run)
    assert [p.name for p in s.path.iterdir() if not p.name.startswith(".")] == [] and load_series(s.path) is None


def test_cli_exits_2_not_1_when_the_launcher_is_not_there(tmp_path):
    """1 means "regression" (a timer's SuccessExitStatus=1): a run that could not probe is 2."""
    import subprocess
    import sys

    from tests.conftest import ROOT, free_port
    series = tmp_path / "series"
    r = subprocess.run([sys.executable, "-m", "app", "snapshot", "--url", f"http://127.0.0.1:{free_port()}/",
                        "--series", str(series), "-n", "3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error:" in r.stderr and "refused" in r.stderr, r.stderr
    assert load_series(series) is None and [p for p in series.iterdir() if not p.name.startswith(".")] == []
    r = subprocess.run([sys.executable, "-m", "app", "snapshot", str(tmp_path / "x"), "--series", str(series)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not both" in r.stderr
