"""Apply scheduling presets to every thread of the process, all-or-nothing, and read them back.

Why per thread: on Linux affinity, nice and policy belong to each thread; a thread inherits them
from its creator only at creation. So a preset is applied to every existing thread, and `ensure()`
(called at each request) fixes threads created since (torch's pools start lazily).

Why all-or-nothing: a half-applied preset (some threads niced, others not) is worse than either
state. Every thread's state is snapshotted before its first change; on any failure everything
changed is restored and `TuningError` says why. Changes run in three phases so that a refusal
happens before anything irreversible: (1) affinity, (2) changes that need privilege (lower nice,
real-time policy, leaving SCHED_IDLE) -- an unprivileged process is refused here with nothing
irreversible done yet, (3) changes any owner may make but may not be able to undo (raise nice,
batch/idle). A thread that exits meanwhile is not a failure.

Torch does not shrink its intra-op pool when the affinity mask shrinks, so its thread count is set
to match the CPU set; torch is used only if the process already imported it.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace

from . import kernel
from .kernel import POLICIES, POLICY_NAMES, RT_POLICIES, ThreadState
from .knobs import STATE_DIR, Housekeeping, KnobError
from .presets import Preset, resolve_cpus
from .rtbudget import RtBudget, RtGrant

# RLIMIT_RTTIME: CPU time (us) a real-time thread may use without a blocking syscall (the count
# survives switching policy back and forth; only sleeping resets it). At the soft limit the kernel
# sends SIGXCPU, whose default action kills the process with a core dump.
# What happens to that signal decides whether the service lives, so, step by step: it is
# process-directed, and the kernel hands it to the runaway thread itself when that thread does not
# block it -- a worker (UI and synthesis threads are), never the main thread. Python can install a
# handler only from the main thread, and that handler's C part, run on the worker, merely flags the
# signal; the Python part runs in the main thread, and only once the main thread next notices the
# flag (measured: not before the spinning thread itself came back to Python, i.e. too late). So:
#   - the Tuner, created on the main thread with real-time allowed (webui.py does this before any
#     worker thread exists), blocks SIGXCPU in that thread, so every thread created afterwards
#     inherits the block, and starts a small watchdog thread that waits for it with sigwait(): a
#     blocked process-directed signal stays pending until the watchdog takes it, whichever thread
#     ran out of RT time. The watchdog is left out of apply/ensure and runs at the top real-time
#     priority, so it gets a CPU even when the runaway holds every CPU the preset allows;
#   - a Python handler is installed too, for threads that existed before (they did not inherit
#     the block): it demotes the same way when the main thread gets to it, and never kills;
#   - arming real-time from a thread when neither is in place (a tuner built off the main thread,
#     SIGXCPU ignored) refuses real-time with a sentence, instead of leaving the default to kill.
# The demotion moves every real-time thread to SCHED_OTHER and sets `rt_demoted`: the runaway loses
# its grip on the CPU and the service lives; the next ensure() (next request) goes real-time again.
# RT throttling (sched_rt_runtime_us) still keeps 5% of each CPU for everyone else meanwhile. A
# SIGXCPU from RLIMIT_CPU (unset unless the operator sets it) is treated the same while this is
# installed: logged, not fatal, until RLIMIT_CPU's hard limit.
# The soft limit is RTTIME_SOFT_US when real-time is switched on; each request (`rt_request`) sets
# it to that request's budget, sized from its expected duration, and restarts the synthesis
# thread's count at 0 (tuning/rtbudget.py says why a fixed limit demoted legitimate requests).
RTTIME_SOFT_US = 2_000_000
RT_RESTART_SLEEP_S = 50e-6  # one real-time sleep: the kernel zeroes the thread's count on its wake-up


class TuningError(RuntimeError):
    """A preset was refused or failed; nothing was left changed. The message is for the user."""


@dataclass(frozen=True)
class Target:
    """Resolved per-thread state a preset asks for (inherit fields already filled in)."""

    cpus: frozenset[int]
    nice: int
    policy: int
    rt_priority: int
    reset_on_fork: bool
    torch_threads: int | None
    away: frozenset[str] = frozenset()  # machine-wide knobs moved off `cpus` (tuning/knobs.py)

    def state_for(self, tid: int) -> ThreadState:
        return ThreadState(tid, self.cpus, self.nice, self.policy, self.rt_priority, self.reset_on_fork)


@dataclass
class _Snapshot:
    threads: dict[int, ThreadState]
    torch_threads: int | None
    rttime: tuple[int, int] | None
    rttime_saved: tuple[int, int] | None
    current: Preset
    target: Target
    autogroup_nice: int | None = None


class Tuner:
    def __init__(self, presets, allow_realtime: bool = False, force_realtime: bool = False,
                 pid: int | None = None, rt_runtime_path: str = kernel.RT_RUNTIME_PATH,
                 online_cpus_path: str = kernel.ONLINE_CPUS_PATH, rttime_soft_us: int = RTTIME_SOFT_US,
                 knob_state_dir: str | None = STATE_DIR):
        self.presets = presets
        self.allow_realtime = allow_realtime
        self.force_realtime = force_realtime
        self.pid = pid or os.getpid()
        self._is_self = self.pid == os.getpid()
        self._rt_runtime_path = rt_runtime_path
        self._online_path = online_cpus_path
        self._rttime_soft_us = rttime_soft_us
        self._lock = threading.RLock()
        self._aux: set[int] = set()
        self.rolled_back: list[int] = []  # tids restored by the last failed transition (diagnostics)
        # "inherit" means: what the process had when the tuner was created (after the launch
        # preset, if any), read from the main thread.
        self._baseline = kernel.get_state(self.pid)
        self._autogroup_baseline = kernel.get_autogroup_nice(self.pid)  # None: no autogroup
        self._torch_baseline: int | None = None
        self._rttime_saved: tuple[int, int] | None = None  # limit before we went real-time
        self._xcpu_prev = None  # SIGXCPU disposition before our handler, while installed
        self.rt_demoted = False  # set when SIGXCPU made us drop real-time (see RTTIME_SOFT_US)
        self.demotions = 0  # how many times SIGXCPU demoted us (a request compares before/after)
        self.budget = RtBudget(floor_s=rttime_soft_us / 1e6)  # per-request RT budgets (rt_request)
        base = presets.get("default") if hasattr(presets, "get") else None
        self._current: Preset = base or Preset(name="default", description="inherit everything")
        self._target = self._resolve(self._current)
        self._watchdog: threading.Thread | None = None
        self._watchdog_tid: int | None = None
        self._closing = False
        if allow_realtime:
            self._install_xcpu()
        # machine-wide knobs (a preset's `away`): a dead owner's leftovers go back first
        self._hk = Housekeeping(knob_state_dir if self._is_self else None)
        restored = self._hk.restore_stale()
        if restored:
            sys.stderr.write(f"tuning: restored what a dead launcher had moved: {', '.join(restored)}\n")
        atexit.register(self._hk.restore)  # they outlive us otherwise (close() does it first)

    def close(self) -> None:
        """Put back what a preset's `away` moved machine-wide; stop the SIGXCPU watchdog and give
        SIGXCPU back its previous disposition and mask (main thread only; see RTTIME_SOFT_US)."""
        with self._lock:
            for problem in self._hk.restore():
                sys.stderr.write(f"tuning: could not restore {problem}\n")
        if threading.current_thread() is not threading.main_thread():
            return
        if self._watchdog is not None:
            self._closing = True
            signal.pthread_kill(self._watchdog.ident, signal.SIGXCPU)
            self._watchdog.join(5)
            self._watchdog = self._watchdog_tid = None
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGXCPU})
        if self._xcpu_prev is not None:
            signal.signal(signal.SIGXCPU, self._xcpu_prev)
            self._xcpu_prev = None

    # -- public API -------------------------------------------------------------------------------

    @property
    def current(self) -> Preset:
        """The service-wide preset in force (inside a request_scope: the request's preset)."""
        return self._current

    @property
    def allowed(self) -> list[str]:
        return list(getattr(self.presets, "allowed", list(self.presets)))

    @property
    def launch_cpus(self) -> frozenset[int]:
        """CPUs the process was allowed when the tuner was created (relative specs resolve here)."""
        return self._baseline.cpus

    def target(self, name: str | None = None) -> Target:
        return self._resolve(self._lookup(name)) if name else self._target

    def adopt(self, preset: Preset) -> None:
        """Record a preset already applied at launch (tuning.launch) as the one in force."""
        with self._lock:
            b = self._baseline  # the launch state is what the kernel holds now
            self._current = preset
            self._target = replace(self._resolve(preset), cpus=b.cpus, nice=b.nice, policy=b.policy,
                                   rt_priority=b.rt_priority, reset_on_fork=b.reset_on_fork)
            self._apply_away(preset, self._target)  # machine-wide: apply_launch's tuner put them back
            if self._target.policy in RT_POLICIES and self.allow_realtime:
                self._arm_rttime()  # the net and per-request budgets for a real-time launch too

    def apply(self, name: str) -> Preset:
        """Apply a preset service-wide to every thread (except aux threads), all-or-nothing."""
        with self._lock:
            preset = self._lookup(name)
            target = self._resolve(preset)
            self._check_safety(preset, target)
            self._switch(preset, target, {tid: target.state_for(tid) for tid in self._worker_tids()})
            self._place_all_aux()
            return preset

    def ensure(self) -> int:
        """Re-apply the preset in force to threads that differ from it (created since, or changed
        behind our back). Returns how many threads were fixed. All-or-nothing like apply()."""
        with self._lock:
            self._aux &= set(kernel.list_threads(self.pid))  # forget exited aux threads
            t = self._target
            wrong = {}
            for tid in self._worker_tids():
                try:
                    st = kernel.get_state(tid)
                except ProcessLookupError:
                    continue
                want = t.state_for(tid)
                if st != want:
                    wrong[tid] = want
            self._transition(wrong)
            self._set_torch_threads(t.torch_threads)
            return len(wrong)

    @contextlib.contextmanager
    def request_scope(self, name: str):
        """Apply `name` for one request, then restore exactly what each thread had (and torch's
        thread count, RLIMIT_RTTIME and the preset in force). Threads created during the scope get
        the service preset."""
        with self._lock:
            snap = self._snapshot()
            self.apply(name)
        try:
            yield self._current
        finally:
            with self._lock:
                self._restore(snap)

    @contextlib.contextmanager
    def rt_request(self, units: int = 1):
        """Wrap one synthesis (on the thread that runs it). When a real-time preset is in force:
        the calling thread's RLIMIT_RTTIME count restarts at 0 (one real-time sleep) and the soft
        limit becomes this request's budget (tuning/rtbudget.py). Yields an RtGrant; its `demoted` says whether SIGXCPU demoted us meanwhile. A request
        that completes undemoted is observed (its wall time sizes the next budgets), whatever
        the preset: `units` is its length in characters. The limit stays at the budget after
        the request: lowering it while a thread that computed through the request is still
        real-time and running (this one, or a torch worker still spinning) would demote it at
        once (measured: a 10.5 s request demoted right after it ended, against a 2 s floor)."""
        with self._lock:
            armed = self._is_self and self._rttime_saved is not None and self._target.policy in RT_POLICIES
            if armed:
                grant = self.budget.grant(units, self._current.rt_budget_s)
                self._set_soft_us(int(grant.budget_s * 1e6))
            else:
                grant = RtGrant()
            before = self.demotions
        if armed and (os.sched_getscheduler(0) & ~kernel.RESET_ON_FORK) in RT_POLICIES:
            time.sleep(RT_RESTART_SLEEP_S)
        t0 = time.monotonic()
        ok = False
        try:
            yield grant
            ok = True
        finally:
            wall = time.monotonic() - t0
            with self._lock:
                grant.demoted = self.demotions > before
                if ok and not grant.demoted:
                    self.budget.observe(wall, units)

    def place_aux_thread(self) -> dict:
        """Place the *calling* thread (tracing/analysis worker) so it does not compete with
        synthesis: on launch CPUs the synthesis preset leaves free (else all of them), at SCHED_BATCH and
        the launch nice. It is then left out of apply/ensure, and re-placed when the preset changes."""
        tid = kernel.current_tid()
        with self._lock:
            self._aux.add(tid)
            return self._place_aux(tid)

    def readback(self) -> dict:
        """What the kernel holds now, from /proc, plus whether it matches the preset in force.
        Top-level cpus/nice/policy/rt_priority are the synthesis threads' common value ("mixed"
        if they differ)."""
        with self._lock:
            t, name = self._target, self._current.name
            aux = set(self._aux)
        rows = kernel.read_proc_all(self.pid)
        want = {"cpus": kernel.format_cpu_list(t.cpus), "nice": t.nice,
                "policy": POLICY_NAMES.get(t.policy, str(t.policy)), "rt_priority": t.rt_priority}
        mismatches = []
        for r in rows:
            r["aux"] = r["tid"] in aux or r["tid"] == self._watchdog_tid  # not synthesis threads
            if r["aux"]:
                continue
            for k, v in want.items():
                if r[k] != v:
                    mismatches.append(f"thread {r['tid']} ({r['comm']}): {k} is {r[k]}, preset wants {v}")
        workers = [r for r in rows if not r["aux"]]
        out = {"preset": name, "threads": rows, "target": {**want, "torch_threads": t.torch_threads}}
        for k in want:
            vals = {r[k] for r in workers}
            out[k] = vals.pop() if len(vals) == 1 else "mixed"
        torch = self._torch()
        out["torch_threads"] = torch.get_num_threads() if torch else None
        out["torch_interop_threads"] = torch.get_num_interop_threads() if torch else None
        if torch and t.torch_threads and out["torch_threads"] != t.torch_threads:
            mismatches.append(f"torch intra-op threads is {out['torch_threads']}, preset wants {t.torch_threads}")
        out["autogroup_nice"] = kernel.get_autogroup_nice(self.pid)
        out["autogroup_owned"] = os.getsid(self.pid) == self.pid
        rl = self._get_rttime()
        out["rlimit_rttime_us"] = None if rl is None or rl[0] == resource.RLIM_INFINITY else rl[0]
        out["rt_demoted"] = self.rt_demoted
        with self._lock:
            out["away"] = self._hk.readback()
        out["matches"] = not mismatches
        out["mismatches"] = mismatches
        return out

    # -- resolution and safety ----------------------------------------------------------------

    def _lookup(self, name: str) -> Preset:
        refused = getattr(self.presets, "refused", {})
        if name in refused:  # a computed preset this machine cannot have (e.g. gpu-local, no GPU)
            raise TuningError(f"Preset {name!r} refused: {refused[name]}.")
        if name not in self.presets:
            raise TuningError(f"Unknown preset {name!r}. Available: {', '.join(self.allowed)}.")
        if name not in self.allowed:
            raise TuningError(f"Preset {name!r} is not allowed on this server. Allowed: {', '.join(self.allowed)}.")
        return self.presets[name]

    def _resolve(self, p: Preset) -> Target:
        b = self._baseline
        if p.cpus is None:
            cpus = b.cpus
        else:
            try:
                cpus = resolve_cpus(p.cpus, b.cpus)
            except ValueError as e:
                raise TuningError(f"Preset {p.name!r}: {e}.") from None
            online = kernel.online_cpus(self._online_path)
            bad = cpus - online
            if bad or not cpus:
                raise TuningError(
                    f"Preset {p.name!r} asks for CPU(s) {kernel.format_cpu_list(bad) or p.cpus} which are not "
                    f"online here (online: {kernel.format_cpu_list(online)}).")
        if p.policy is None:
            policy, prio, rof = b.policy, b.rt_priority, b.reset_on_fork
        else:
            policy, prio = POLICIES[p.policy], p.rt_priority
            rof = policy in RT_POLICIES  # children of an RT thread start as SCHED_OTHER
        nice = b.nice if p.nice is None else p.nice
        if p.torch_threads is not None:
            tt = p.torch_threads
        elif p.cpus is not None:
            tt = len(cpus)
        else:
            tt = self._torch_baseline  # None until torch is seen: then "leave it"
        return Target(frozenset(cpus), nice, policy, prio, rof, tt, frozenset(p.away))

    def _check_safety(self, p: Preset, t: Target) -> None:
        if t.policy not in RT_POLICIES:
            return
        if not self.allow_realtime:
            raise TuningError(f"Preset {p.name!r} uses real-time scheduling ({POLICY_NAMES[t.policy]}); "
                              "start the service with --allow-realtime to permit it.")
        if kernel.rt_runtime_us(self._rt_runtime_path) == -1 and not self.force_realtime:
            raise TuningError(f"Preset {p.name!r} refused: RT throttling is off "
                              f"({self._rt_runtime_path} = -1), so a runaway real-time thread could "
                              "own a CPU. Re-enable it (e.g. 950000) or pass --force-realtime.")

    # -- transitions ------------------------------------------------------------------------------

    def _worker_tids(self) -> list[int]:
        return [t for t in kernel.list_threads(self.pid) if t not in self._aux and t != self._watchdog_tid]

    def _switch(self, preset: Preset, target: Target, desired: dict[int, ThreadState]) -> None:
        """Move threads to `desired` and make `preset` current, with the RT net and torch count."""
        going_rt = target.policy in RT_POLICIES
        rl_before, saved_before = self._get_rttime(), self._rttime_saved
        ag_before = kernel.get_autogroup_nice(self.pid)
        try:
            self._set_autogroup(preset, ag_before)
            if going_rt:
                self._arm_rttime()
            self._apply_away(preset, target)
            self._transition(desired)
        except BaseException:
            with contextlib.suppress(TuningError):
                self._apply_away(self._current, self._target)  # what the preset in force had moved
            with contextlib.suppress(OSError, ValueError):
                self._set_rttime(rl_before)
            with contextlib.suppress(OSError):
                if ag_before is not None and kernel.get_autogroup_nice(self.pid) != ag_before:
                    kernel.set_autogroup_nice(self.pid, ag_before)
            self._rttime_saved = saved_before
            self._watchdog_rt(self._target.policy in RT_POLICIES)  # as it was before this switch
            raise
        if not going_rt:
            self._disarm_rttime()
        self._current, self._target = preset, target
        self._set_torch_threads(target.torch_threads)

    def _apply_away(self, preset: Preset, t: Target) -> None:
        """The preset's `away` knobs onto the online CPUs the synthesis does not use (all back when
        it has none); all-or-nothing (tuning/knobs.py)."""
        if not self._is_self:
            return
        cpus = kernel.online_cpus(self._online_path) - t.cpus if t.away else frozenset()
        try:
            self._hk.apply(t.away, cpus)
        except KnobError as e:
            raise TuningError(f"Preset {preset.name!r}: {e.strerror}. Nothing was changed.") from None

    def _set_autogroup(self, preset: Preset, now: int | None) -> None:
        """With autogroup on, a preset's nice also becomes its session group's nice; otherwise the
        threads' nice is void against tasks of other sessions (measured: nice -10 gave no gain
        against a stress-ng started in another session). Inherit = the launch value."""
        if now is None or os.getsid(self.pid) != self.pid:
            # Only a session leader owns its autogroup (systemd services are): otherwise the group
            # is the launching shell's session and would keep our nice after we exit.
            return
        want = self._autogroup_baseline if preset.nice is None else preset.nice
        if want is None or want == now:
            return
        try:
            kernel.set_autogroup_nice(self.pid, want)
        except OSError as e:
            if e.errno in (errno.EPERM, errno.EACCES):
                raise TuningError(f"Permission denied lowering the session's autogroup nice from {now} to "
                                  f"{want}: needs root or CAP_SYS_NICE. Nothing was changed.") from None
            raise TuningError(f"Setting the autogroup nice to {want} failed: {e.strerror}. "
                              "Nothing was changed.") from None

    def _transition(self, desired: dict[int, ThreadState]) -> None:
        """Move each tid to its desired state, all-or-nothing (see the module docstring)."""
        journal: dict[int, ThreadState] = {}  # tid -> state before our first change
        current: dict[int, ThreadState] = {}
        for tid in desired:
            try:
                current[tid] = kernel.get_state(tid)
            except ProcessLookupError:
                pass
        gone: set[int] = set()

        def step(tid, what, fn):
            if tid in gone:
                return
            journal.setdefault(tid, current[tid])
            try:
                fn()
            except ProcessLookupError:
                gone.add(tid)  # the thread exited: nothing to apply or restore
            except OSError as e:
                raise TuningError(self._explain(e, what, tid, current[tid], desired[tid])) from None

        try:
            for tid, cur in current.items():  # phase 1: affinity
                want = desired[tid]
                if cur.cpus != want.cpus:
                    step(tid, "CPU affinity", lambda: kernel.set_affinity(tid, want.cpus))
                    if tid not in gone:
                        got = self._affinity(tid)
                        if got is not None and got != want.cpus:  # the kernel silently intersected
                            raise TuningError(
                                f"CPU(s) {kernel.format_cpu_list(want.cpus - got)} are not usable by this "
                                f"process (outside its cpuset); it may use {kernel.format_cpu_list(got)} of "
                                f"{kernel.format_cpu_list(want.cpus)}.")
            for privileged in (True, False):  # phase 2: needs privilege; phase 3: may be one-way
                for tid, cur in current.items():
                    want = desired[tid]
                    if _sched_key(cur) != _sched_key(want) and _policy_escalates(cur, want) == privileged:
                        step(tid, "scheduling policy", lambda: kernel.set_policy(
                            tid, want.policy, want.rt_priority, want.reset_on_fork))
                    if cur.nice != want.nice and (want.nice < cur.nice) == privileged:
                        step(tid, "nice", lambda: kernel.set_nice(tid, want.nice))
        except TuningError as e:
            self.rolled_back = list(journal)
            problems = self._rollback(journal)
            if problems:
                raise TuningError(f"{e} Rolling back also failed: {'; '.join(problems)}") from None
            raise

    def _rollback(self, journal: dict[int, ThreadState]) -> list[str]:
        """Restore journaled threads, privileged direction last-changed first. Returns failures."""
        problems = []
        for tid, old in reversed(list(journal.items())):
            for what, fn in (("policy", lambda: kernel.set_policy(tid, old.policy, old.rt_priority, old.reset_on_fork)),
                             ("nice", lambda: kernel.set_nice(tid, old.nice)),
                             ("affinity", lambda: kernel.set_affinity(tid, old.cpus))):
                try:
                    fn()
                except ProcessLookupError:
                    break
                except OSError as e:
                    problems.append(f"thread {tid} {what}: {e.strerror}")
        return problems

    def _explain(self, e: OSError, what: str, tid: int, cur: ThreadState, want: ThreadState) -> str:
        if e.errno in (errno.EPERM, errno.EACCES):
            if what == "nice":
                why = (f"lowering nice from {cur.nice} to {want.nice} needs root or CAP_SYS_NICE "
                       "(or a higher RLIMIT_NICE)")
            elif what == "scheduling policy":
                why = (f"switching to {POLICY_NAMES.get(want.policy)} priority {want.rt_priority} needs root or "
                       "CAP_SYS_NICE (or RLIMIT_RTPRIO)")
            else:
                why = "the process may not change this thread's CPU affinity"
            return f"Permission denied setting {what} on thread {tid}: {why}. Nothing was changed."
        if e.errno == errno.EINVAL and what == "CPU affinity":
            return (f"CPU(s) {kernel.format_cpu_list(want.cpus)} are not usable by this process (offline or "
                    f"outside its cpuset). Nothing was changed.")
        if e.errno == errno.EINVAL:
            return (f"The kernel rejected {what} {POLICY_NAMES.get(want.policy)}/{want.rt_priority}/nice "
                    f"{want.nice} on thread {tid} (invalid value). Nothing was changed.")
        return f"Setting {what} on thread {tid} failed: {e.strerror}. Nothing was changed."

    @staticmethod
    def _affinity(tid: int) -> frozenset[int] | None:
        try:
            return frozenset(os.sched_getaffinity(tid))
        except ProcessLookupError:
            return None

    # -- request scope ----------------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        threads = {}
        for tid in self._worker_tids():
            try:
                threads[tid] = kernel.get_state(tid)
            except ProcessLookupError:
                pass
        torch = self._torch()
        return _Snapshot(threads, torch.get_num_threads() if torch else None, self._get_rttime(),
                         self._rttime_saved, self._current, self._target,
                         kernel.get_autogroup_nice(self.pid))

    def _restore(self, s: _Snapshot) -> None:
        live = self._worker_tids()
        desired = {tid: s.threads.get(tid) or s.target.state_for(tid) for tid in live}
        try:
            self._transition(desired)
        finally:
            if s.autogroup_nice is not None and kernel.get_autogroup_nice(self.pid) != s.autogroup_nice:
                with contextlib.suppress(OSError):  # raising it back never needs privilege... lowering
                    kernel.set_autogroup_nice(self.pid, s.autogroup_nice)  # back does: best effort
            self._current, self._target = s.current, s.target
            try:
                self._apply_away(s.current, s.target)
            except TuningError as e:
                sys.stderr.write(f"tuning: restoring after the request: {e}\n")
            self._set_rttime(s.rttime)
            self._rttime_saved = s.rttime_saved
            self._watchdog_rt(s.target.policy in RT_POLICIES)
            if s.torch_threads:
                self._set_torch_threads(s.torch_threads)
            self._place_all_aux()

    # -- aux threads ------------------------------------------------------------------------------

    def _place_aux(self, tid: int) -> dict:
        free = self._baseline.cpus - self._target.cpus
        try:
            kernel.set_affinity(tid, free or self._baseline.cpus)
            st = kernel.get_state(tid)
            if st.nice < self._baseline.nice:  # inherited a synthesis boost: drop it (never needs privilege)
                kernel.set_nice(tid, self._baseline.nice)
            if st.policy != os.SCHED_BATCH or st.reset_on_fork:
                # batch, not idle, even with no CPU left free: SCHED_IDLE starves it under the very
                # CPU pressure a trace is meant to explain (measured: 20 ms of window preparation took
                # 9.9 s under `stress-ng --cpu 2 --vm 1`). Batch still does not preempt interactive
                # tasks on wake-up. Nor a higher nice: at nice 10 builtin's synthesis under four callers
                # was no longer slowed (262 ms traced and untraced, against 290 / 254 at nice 0), but
                # the post-processing waited instead and traced/untraced throughput stayed 0.835 / 0.836
                # (issue 25): the CPU it needs is the same, and the breakdown came later.
                kernel.set_policy(tid, os.SCHED_BATCH)
        except ProcessLookupError:
            self._aux.discard(tid)
            return {"tid": tid, "gone": True}
        return {"tid": tid, "cpus": kernel.format_cpu_list(free or self._baseline.cpus), "policy": "batch"}

    def _place_all_aux(self) -> None:
        for tid in list(self._aux):
            try:
                self._place_aux(tid)
            except OSError:
                pass  # best effort: an aux thread's placement must not fail a preset switch

    # -- torch and RLIMIT_RTTIME ------------------------------------------------------------------

    def _torch(self):
        if not self._is_self:
            return None
        torch = sys.modules.get("torch")  # never import it: tuning must not depend on torch
        if torch is None or not hasattr(torch, "get_num_threads"):
            return None
        if self._torch_baseline is None:
            self._torch_baseline = torch.get_num_threads()
        return torch

    def _set_torch_threads(self, n: int | None) -> None:
        torch = self._torch()
        if torch is None:
            return
        if n is None:
            n = self._torch_baseline
        if n and torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def _get_rttime(self) -> tuple[int, int] | None:
        try:
            if self._is_self:
                return resource.getrlimit(resource.RLIMIT_RTTIME)
            return resource.prlimit(self.pid, resource.RLIMIT_RTTIME)
        except (OSError, ValueError, AttributeError):
            return None

    def _set_rttime(self, lim: tuple[int, int] | None) -> None:
        if lim is None or lim == self._get_rttime():
            return
        if self._is_self:
            resource.setrlimit(resource.RLIMIT_RTTIME, lim)
        else:
            resource.prlimit(self.pid, resource.RLIMIT_RTTIME, lim)

    def _set_soft_us(self, soft_us: int) -> None:
        """RLIMIT_RTTIME's soft limit (never above the hard one); best effort inside a request."""
        cur = self._get_rttime()
        if cur is None:
            return
        hard = cur[1]
        want = soft_us if hard == resource.RLIM_INFINITY else min(soft_us, hard)
        with contextlib.suppress(OSError, ValueError):
            self._set_rttime((want, hard))

    def _arm_rttime(self) -> None:
        """Before going real-time: soft limit so a runaway RT loop gets SIGXCPU (see top), and
        the handler that turns that signal into a demotion must be in place."""
        self._check_xcpu_net()
        cur = self._get_rttime()
        if cur is None:
            raise TuningError("Cannot set RLIMIT_RTTIME (the real-time safety net); refusing real-time.")
        if self._rttime_saved is None:
            self._rttime_saved = cur
        soft, hard = cur
        inf = resource.RLIM_INFINITY
        new_soft = self._rttime_soft_us if hard == inf else min(self._rttime_soft_us, hard)
        if soft == inf or soft > new_soft:
            try:
                self._set_rttime((new_soft, hard))
            except (OSError, ValueError) as e:
                raise TuningError(f"Cannot set RLIMIT_RTTIME ({e}); refusing real-time.") from None
        self.rt_demoted = False
        self._watchdog_rt(True)

    def _install_xcpu(self) -> None:
        """Block SIGXCPU for threads created from now on and start the watchdog that takes it,
        plus the fallback handler (see RTTIME_SOFT_US). Only from the main thread, only when
        nobody else handles SIGXCPU."""
        if (not self._is_self or self._watchdog is not None or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGXCPU) != signal.SIG_DFL):
            return
        self._xcpu_prev = signal.signal(signal.SIGXCPU, self._on_xcpu)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGXCPU})
        ready = threading.Event()
        self._watchdog = threading.Thread(target=self._watch_xcpu, args=(ready,), name="rt-watchdog", daemon=True)
        self._watchdog.start()
        ready.wait(5)

    def _watch_xcpu(self, ready: threading.Event) -> None:
        self._watchdog_tid = kernel.current_tid()
        with contextlib.suppress(OSError):  # its name in top/ps and the Scheduling tab
            with open(f"/proc/self/task/{self._watchdog_tid}/comm", "w") as f:
                f.write("rt-watchdog")
        ready.set()
        while not self._closing:
            signal.sigwait({signal.SIGXCPU})
            if not self._closing:
                self._demote()

    def _check_xcpu_net(self) -> None:
        """Refuse real-time unless SIGXCPU will be handled (see RTTIME_SOFT_US): at the soft limit
        the kernel's default action would kill the whole service."""
        if not self._is_self:
            return  # tuning another process: its own SIGXCPU disposition is its business
        self._install_xcpu()  # a no-op unless on the main thread with SIGXCPU at its default
        h = signal.getsignal(signal.SIGXCPU)
        if self._watchdog is None and not callable(h):
            why = ("ignored" if h == signal.SIG_IGN else "not handled: the tuner was created off the main "
                   "thread, where Python cannot install signal handlers")
            raise TuningError("Real-time refused: SIGXCPU (sent at the RLIMIT_RTTIME safety limit) is "
                              f"{why}, so a runaway real-time thread would kill the service or never be "
                              "demoted. Create the tuner on the main thread with real-time allowed.")

    def _disarm_rttime(self) -> None:
        if self._rttime_saved is not None:
            self._set_rttime(self._rttime_saved)
            self._rttime_saved = None
        self._watchdog_rt(False)

    def _watchdog_rt(self, on: bool) -> None:
        """While real-time is in force the watchdog runs at the top RT priority, so it gets a CPU
        even when a runaway holds every CPU the preset allows; otherwise it is an ordinary thread
        like the launch baseline (nothing real-time is left behind)."""
        tid = self._watchdog_tid
        if tid is None:
            return
        b = self._baseline
        with contextlib.suppress(OSError):  # without CAP_SYS_NICE no RT preset applies either
            if on:
                kernel.set_policy(tid, os.SCHED_FIFO, os.sched_get_priority_max(os.SCHED_FIFO))
            else:
                kernel.set_policy(tid, b.policy, b.rt_priority, b.reset_on_fork)

    def _on_xcpu(self, signum, frame) -> None:
        """The fallback handler (threads that do not block SIGXCPU; see RTTIME_SOFT_US)."""
        self._demote()

    def _demote(self) -> None:
        """SIGXCPU from RLIMIT_RTTIME: drop every real-time thread to SCHED_OTHER (the watchdog
        keeps its own priority). No lock: a thread may hold it mid-transition."""
        for tid in kernel.list_threads(self.pid):
            if tid == self._watchdog_tid:
                continue
            with contextlib.suppress(OSError):
                if kernel.get_state(tid).policy in RT_POLICIES:
                    kernel.set_policy(tid, os.SCHED_OTHER)
        self.rt_demoted = True
        self.demotions += 1
        rl = self._get_rttime()
        ran = f"{rl[0] / 1e6 - 1:g} s or more" if rl and rl[0] != resource.RLIM_INFINITY else "past its budget"
        sys.stderr.write(f"tuning: RLIMIT_RTTIME reached (a real-time thread ran {ran} "  # the kernel adds 1 s per signal
                         "without blocking); "
                         "all threads demoted to SCHED_OTHER until the next request\n")


def _sched_key(s: ThreadState) -> tuple:
    return (s.policy, s.rt_priority, s.reset_on_fork)


def _policy_escalates(cur: ThreadState, want: ThreadState) -> bool:
    """True if the change may need CAP_SYS_NICE: into RT or a higher RT priority, or out of IDLE."""
    if want.policy in RT_POLICIES:
        return cur.policy not in RT_POLICIES or want.rt_priority > cur.rt_priority
    return cur.policy == os.SCHED_IDLE and want.policy != os.SCHED_IDLE
