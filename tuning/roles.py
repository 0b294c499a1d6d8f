"""Name the service's threads by role in the kernel (comm), so traces say who is who.

Every thread of a Python process is called `python` in the kernel: the trace, the breakdown's
thread table, the blockers and the findings could not tell the synthesis thread from torch's
workers, the web server or the trace worker. A thread's comm (15 bytes, what sched_switch records
and `ps -L`, trace-cmd and Perfetto show) is set here, per tid, through
/proc/self/task/<tid>/comm (the kernel allows it within a thread group; prctl(PR_SET_NAME) does the
same for the calling thread only). Threads we cannot identify keep their comm.

How each role is found (all real tids of the live process, none guessed from counts):
- synthesis (`tts-synth`): the thread that calls `name_synthesis_thread()`: the service calls it on
  the thread about to run the engine, before the trace window opens.
- torch intra-op workers (`torch-intra-<n>`): torch's CPU builds run intra-op parallelism on
  OpenMP; libgomp keeps one worker team *per master thread*, so the synthesis thread's team is the
  one that matters. We run one empty parallel region of torch's size (torch.get_num_threads())
  through the very libgomp torch loaded (GOMP_parallel via ctypes, ~0.1 ms); each team member
  reports its omp_get_thread_num() and tid. Team member n (n >= 1) is `torch-intra-<n>`; the
  master (0) is the synthesis thread. The region also creates the team ahead of the first torch op,
  so no worker is born inside the trace window.
- torch inter-op workers (`torch-interop-<n>`): torch's c10 thread pool names its threads
  `PTThreadPool` itself; those are renamed in order of tid.
- web server: the thread running an asyncio event loop under uvicorn (`web-loop`), and anyio's
  worker threads that run Gradio's sync handlers (`web-worker`), recognised from their Python
  stacks (sys._current_frames).
- trace worker (`trace-aux`): the service names its aux thread with `name_current(TRACE_AUX)`.

`roles()` returns {tid: role kind} for live threads (role kinds are the stable names below); the
service passes it to findings and into the breakdown (threads[].role), since tracing/ does not
import tuning/.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading

COMM_MAX = 15  # TASK_COMM_LEN - 1

# role kinds (stable: findings and the breakdown's threads[].role use them) -> comm
SYNTHESIS = "synthesis"
TORCH_INTRA = "torch-intra"
TORCH_INTEROP = "torch-interop"
WEB_LOOP = "web-loop"
WEB_WORKER = "web-worker"
TRACE_AUX = "trace-aux"
KINDS = (SYNTHESIS, TORCH_INTRA, TORCH_INTEROP, WEB_LOOP, WEB_WORKER, TRACE_AUX)
SYNTH_COMM = "tts-synth"
INTEROP_COMM = "PTThreadPool"  # what torch's c10 ThreadPool calls its threads


def comm_for(kind: str, n: int | None = None) -> str:
    name = SYNTH_COMM if kind == SYNTHESIS else kind
    return (f"{name}-{n}" if n is not None else name)[:COMM_MAX]


def get_comm(tid: int) -> str | None:
    try:
        with open(f"/proc/self/task/{tid}/comm") as fh:
            return fh.read().rstrip("\n")
    except OSError:
        return None


def set_comm(tid: int, name: str) -> bool:
    """Set a thread's comm (truncated to 15 bytes); False when the thread is gone or refused."""
    data = name.encode()[:COMM_MAX]
    try:
        with open(f"/proc/self/task/{tid}/comm", "wb") as fh:
            fh.write(data)
        return True
    except OSError:
        return False


class ThreadRoles:
    """Who is who among this process's threads, named in the kernel. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._roles: dict[int, str] = {}  # tid -> kind
        self._original: dict[int, str] = {}  # tid -> comm before we renamed it
        self._synth: int | None = None
        self._gomp = None  # (GOMP_parallel, omp_get_thread_num, callback type) or False
        self._teams: dict[tuple[int, int], dict[int, int]] = {}  # (master tid, size) -> {n: tid}
        self.notes: list[str] = []  # why a role could not be found (shown once in logs/README)

    def _name(self, tid: int, kind: str, n: int | None = None) -> None:
        want = comm_for(kind, n)
        cur = get_comm(tid)
        if cur is None:
            return
        if tid not in self._original and tid not in self._roles:
            self._original[tid] = cur
        if cur != want and not set_comm(tid, want):
            return
        self._roles[tid] = kind

    def name_current(self, kind: str) -> int:
        tid = threading.get_native_id()
        with self._lock:
            self._name(tid, kind)
        return tid

    def name_synthesis_thread(self, torch=None) -> dict[int, str]:
        """Called on the thread about to synthesize: name it, its torch intra-op team, torch's
        inter-op pool and the web server's threads. Returns roles(). `torch`: the module, when the
        process imported it (tuning never imports torch itself)."""
        tid = threading.get_native_id()
        with self._lock:
            if self._synth is not None and self._synth != tid and self._roles.get(self._synth) == SYNTHESIS:
                # synthesis moved to another thread (Gradio's worker pool): the old one is a worker again
                old = self._synth
                self._roles.pop(old, None)
                set_comm(old, self._original.pop(old, "python"))
            self._synth = tid
            self._name_python_threads(skip={tid})
            self._name(tid, SYNTHESIS)
            if torch is not None:
                for n, wtid in sorted(self._omp_team(torch).items()):
                    if wtid != tid:
                        self._name(wtid, TORCH_INTRA, n)
                self._name_interop()
            self._forget_dead()
            return dict(self._roles)

    def refresh(self) -> dict[int, str]:
        """Name what can be found without a synthesis (the web server's threads, torch's inter-op
        pool, e.g. Gradio workers born since) and forget dead threads; the synthesis thread and its
        torch team keep what the last synthesis named. For views of every thread (the Scheduling
        tab), so they say the same names as the clips. Returns roles()."""
        with self._lock:
            self._name_python_threads(skip={self._synth} if self._synth is not None else set())
            self._name_interop()
            self._forget_dead()
            return dict(self._roles)

    def roles(self) -> dict[int, str]:
        """{tid: kind} of live threads we named."""
        with self._lock:
            self._forget_dead()
            return dict(self._roles)

    @property
    def synthesis_tid(self) -> int | None:
        return self._synth

    def restore(self) -> None:
        """Give every renamed thread its original comm back (service shutdown, tests)."""
        with self._lock:
            for tid, comm in self._original.items():
                set_comm(tid, comm)
            self._original.clear()
            self._roles.clear()
            self._synth = None

    # -- discovery --------------------------------------------------------------------------------

    def _forget_dead(self) -> None:
        live = {int(t) for t in os.listdir("/proc/self/task")}
        for tid in [t for t in self._roles if t not in live]:
            self._roles.pop(tid, None)
            self._original.pop(tid, None)

    def _name_python_threads(self, skip: set[int]) -> None:
        frames = sys._current_frames()
        for th in threading.enumerate():
            tid = th.native_id
            if tid is None or tid in skip or self._roles.get(tid) in (TRACE_AUX, SYNTHESIS):
                continue
            kind = _python_role(frames.get(th.ident))
            if kind is not None:
                self._name(tid, kind)

    def _name_interop(self) -> None:
        mine = sorted(t for t, k in self._roles.items() if k == TORCH_INTEROP)
        fresh = sorted(int(t) for t in os.listdir("/proc/self/task")
                       if int(t) not in self._roles and get_comm(int(t)) == INTEROP_COMM)
        for i, tid in enumerate(fresh, start=len(mine) + 1):
            self._name(tid, TORCH_INTEROP, i)

    def _omp_team(self, torch) -> dict[int, int]:
        """{omp thread number: tid} of the calling thread's OpenMP team at torch's size."""
        if self._gomp is None:
            self._gomp = _load_gomp(torch) or False
            if not self._gomp:
                self.notes.append("torch's intra-op workers could not be identified: torch does not run "
                                  "on a libgomp/libiomp OpenMP runtime this process has loaded")
        if not self._gomp:
            return {}
        parallel, thread_num, cbtype = self._gomp
        try:
            size = int(torch.get_num_threads())
        except Exception:
            return {}
        key = (threading.get_native_id(), size)
        known = self._teams.get(key)
        if known and all(get_comm(t) is not None for t in known.values()):
            # libgomp keeps a master's team for its lifetime: no need to wake the workers again
            # (waking an idle worker costs 4-12 ms on the VMs this was built on)
            return known
        seen: dict[int, int] = {}

        def member(_):
            seen[thread_num()] = threading.get_native_id()

        cb = cbtype(member)
        parallel(cb, None, size, 0)  # CDLL releases the GIL; each member takes it to report
        self._teams = {k: v for k, v in self._teams.items() if k[0] != key[0]}
        self._teams[key] = seen
        return seen


def _load_gomp(torch):
    """GOMP_parallel / omp_get_thread_num of the OpenMP runtime torch uses, or None."""
    try:
        if "OpenMP" not in torch.__config__.parallel_info():
            return None
        with open("/proc/self/maps") as fh:
            paths = {ln.split()[-1] for ln in fh if ln.rstrip().endswith((".so", ".so.1", ".so.5"))
                     and os.path.basename(ln.split()[-1]).startswith(("libgomp", "libiomp"))}
        if len(paths) != 1:  # none, or two runtimes: we cannot tell which one torch's team lives in
            return None
        lib = ctypes.CDLL(paths.pop())
        cbtype = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
        parallel = lib.GOMP_parallel
        parallel.argtypes = [cbtype, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
        thread_num = lib.omp_get_thread_num
        thread_num.restype = ctypes.c_int
        return parallel, thread_num, cbtype
    except (OSError, AttributeError):
        return None


def _python_role(frame) -> str | None:
    """web-loop for the thread running uvicorn's asyncio loop, web-worker for anyio worker threads."""
    files = []
    while frame is not None:
        files.append((frame.f_code.co_filename, frame.f_code.co_name))
        frame = frame.f_back
    if any("uvicorn" in f for f, _ in files) and any(n == "run_forever" and "asyncio" in f for f, n in files):
        return WEB_LOOP
    if any("anyio" in f and n == "run" for f, n in files) and any("_backends" in f for f, _ in files):
        return WEB_WORKER
    return None
