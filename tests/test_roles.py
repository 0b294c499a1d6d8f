"""Threads named by role in the kernel: the names land on the threads torch really uses."""
import os
import threading

import pytest

torch = pytest.importorskip("torch")

from tuning import roles as R  # noqa: E402


def _cpu_ns(tid):
    with open(f"/proc/self/task/{tid}/schedstat") as fh:
        return int(fh.read().split()[0])


def _on_thread(fn):
    out = {}

    def run():
        try:
            out["v"] = fn()
        except BaseException as e:  # surfaced in the test thread
            out["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if "e" in out:
        raise out["e"]
    return out["v"]


@pytest.fixture
def threads(monkeypatch):
    r = R.ThreadRoles()
    yield r
    r.restore()


def test_synthesis_thread_and_its_torch_team(threads):
    torch.set_num_threads(max(2, torch.get_num_threads()))
    n = torch.get_num_threads()

    def synth():
        me = threading.get_native_id()
        got = threads.name_synthesis_thread(torch)
        intra = {t for t, k in got.items() if k == R.TORCH_INTRA}
        comms = {t: R.get_comm(t) for t in intra}
        # the team's workers must be the threads torch's own parallel ops run on
        before = {t: _cpu_ns(t) for t in intra}
        x = torch.randn(1500, 1500)
        for _ in range(6):
            x @ x
        used = {t for t in intra if _cpu_ns(t) - before[t] > 5_000_000}
        tasks_before = set(os.listdir("/proc/self/task"))
        (x @ x).sum()
        born = set(os.listdir("/proc/self/task")) - tasks_before  # the team existed already
        return me, got, intra, comms, used, born, R.get_comm(me)

    me, got, intra, comms, used, born, my_comm = _on_thread(synth)
    assert got[me] == R.SYNTHESIS and my_comm == "tts-synth"
    assert len(intra) == n - 1
    assert sorted(comms.values()) == [f"torch-intra-{i}" for i in range(1, n)]
    assert used == intra, "named workers are not the ones torch computed on"
    assert not born


def test_interop_pool_and_restore(threads):
    @torch.jit.script
    def forked(x):
        fut = torch.jit.fork(torch.mm, x, x)
        return torch.jit.wait(fut)

    forked(torch.randn(64, 64))  # starts torch's inter-op pool (PTThreadPool threads)
    pool = [int(t) for t in os.listdir("/proc/self/task") if R.get_comm(int(t)) == R.INTEROP_COMM]
    assert pool
    got = _on_thread(lambda: threads.name_synthesis_thread(torch))
    interop = sorted(t for t, k in got.items() if k == R.TORCH_INTEROP)
    assert interop == sorted(pool)
    assert {R.get_comm(t) for t in interop} == {f"torch-interop-{i}" for i in range(1, len(pool) + 1)}
    threads.restore()
    assert {R.get_comm(t) for t in pool} == {R.INTEROP_COMM}


def test_synthesis_moving_to_another_thread_gives_the_old_name_back(threads):
    old = _on_thread(lambda: (threading.get_native_id(), threads.name_synthesis_thread()))
    # that thread has exited; a long-lived one takes over, then a second long-lived one
    ev, done = threading.Event(), threading.Event()
    first = {}

    def park():
        first["tid"] = threading.get_native_id()
        first["orig"] = R.get_comm(first["tid"])
        first["roles"] = threads.name_synthesis_thread()
        ev.set()
        done.wait(30)

    t = threading.Thread(target=park)
    t.start()
    ev.wait(30)
    assert R.get_comm(first["tid"]) == "tts-synth"
    assert old[0] not in threads.roles()  # dead threads are forgotten
    second = _on_thread(lambda: threading.get_native_id() if threads.name_synthesis_thread() else None)
    assert R.get_comm(first["tid"]) == first["orig"] != "tts-synth"  # back to what it was
    assert threads.synthesis_tid == second
    done.set()
    t.join()


def test_comm_is_cut_to_15_bytes():
    tid = _on_thread(lambda: (R.set_comm(threading.get_native_id(), "x" * 40),
                              R.get_comm(threading.get_native_id()))[1])
    assert tid == "x" * 15
