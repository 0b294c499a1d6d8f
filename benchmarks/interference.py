"""Interference workloads for benchmarks/preset_efficacy.py: each a real workload, started and
stopped by the benchmark, with a counter that shows it is doing what it is named for.

    kind       workload                                                  evidence (delta while it ran)
    cpu        stress-ng --cpu N --vm 1 --vm-bytes 256M (the issue's)    stress-ng running
    kswapd     a page-cache streamer over a sparse file larger than      /proc/vmstat pgscan_kswapd
               memory: free memory falls to the low watermark and
               kswapd reclaims (no swap needed: it evicts clean cache)
    memcg      this process moved into a memory-limited cgroup (usage    the cgroup's failcnt (v1) /
               + headroom) with a page-cache streamer inside it: every   memory.events max (v2)
               charge past the limit reclaims inside the cgroup, our
               threads' included (a container with a memory limit)
    writeback  a writer dirtying a 256 MB file at a set rate, fsync     /proc/vmstat nr_written
               every 16 MB: flusher kworkers, block I/O and its IRQs
    softirq    stress-ng --udp N over loopback: NET_RX softirqs          /proc/softirqs NET_RX

Every workload runs in its own session with PR_SET_PDEATHSIG, so it cannot outlive a benchmark
that is killed; stop() kills the session, drops the file's page cache, removes files and the
cgroup, and moves this process back where it was. Run it under `flock /tmp/itts-bench.lock`: these
disturb every process on the machine (that is the point), briefly.

The streamer and the writer are the `reader` / `writer` commands of this file (rate-limited loops
of read/write syscalls), so their CPU time is a separate task as a neighbour's would be.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
KINDS = ("cpu", "kswapd", "memcg", "writeback", "softirq")
TMPFS_MAGIC = 0x01021994
SPARSE_BYTES = 1 << 40  # 1 TiB of holes: reading it fills page cache, never the disk
CHUNK = 1 << 20


class Unavailable(RuntimeError):
    """This kind cannot run here; the message says why (the benchmark prints it and goes on)."""


def _die_with_parent():
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(argv) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent)


def _spawn_helper(argv, timeout_s: float = 60.0) -> subprocess.Popen:
    """This file's reader/writer: returns once it says it is ready (its SIGTERM clean-up is
    installed), so even a kill -9 of ours right after is cleaned up by it (PDEATHSIG)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
                         preexec_fn=_die_with_parent, text=True)
    import select
    ready, _, _ = select.select([p.stdout], [], [], timeout_s)
    if not ready or p.stdout.readline().strip() != "ready":
        _kill(p)
        raise Unavailable(f"the workload process did not start: {' '.join(argv[2:4])}")
    return p


def _kill(p: subprocess.Popen | None) -> None:
    """SIGTERM the workload's session (its own: the workers go too), SIGKILL what is left after
    10 s; returns once no process of the session remains (a stress-ng worker can outlive its
    parent for seconds while it unmaps its memory)."""
    if p is None:
        return
    deadline = time.monotonic() + 10
    sig = signal.SIGTERM
    while True:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            break  # nothing of the session left
        if p.poll() is None:
            try:
                p.wait(0.1)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(0.1)
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
    p.wait()


def vmstat(key: str) -> int:
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k == key:
                return int(v)
    return 0


def softirqs(kind: str = "NET_RX") -> int:
    with open("/proc/softirqs") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == f"{kind}:":
                return sum(int(x) for x in parts[1:])
    return 0


def disk_dir(base: str | None = None) -> str:
    """A scratch directory on a real (non-tmpfs) filesystem: page cache and write-back need one."""
    for cand in (base, "/var/tmp", os.path.expanduser("~"), tempfile.gettempdir()):
        if cand and os.path.isdir(cand) and os.access(cand, os.W_OK):
            if _fs_type(cand) != TMPFS_MAGIC:
                return tempfile.mkdtemp(prefix="itts-interference-", dir=cand)
    raise Unavailable("no writable directory on a disk filesystem (all candidates are tmpfs)")


def _fs_type(path: str) -> int | None:
    class StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]
    buf = StatFs()
    libc = ctypes.CDLL(None, use_errno=True)
    return buf.f_type if libc.statfs(path.encode(), ctypes.byref(buf)) == 0 else None


class Interference:
    """One kind: start(), ready() (waits until its evidence counter moves), counter(), alive(),
    stop(); a context manager."""

    name = ""
    counted = True      # False: no counter applies (the cpu hogs are their own evidence)
    evidence_name = ""  # what counter() reads, for the report

    def describe(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def counter(self) -> int:
        """The kind's evidence counter (monotonic); 0 where none applies."""
        return 0

    def alive(self) -> bool:
        return all(p.poll() is None for p in self._procs())

    def ready(self, timeout_s: float = 60.0) -> float:
        """Wait until the evidence counter moves (the workload is biting). Returns the seconds it
        took; raises Unavailable if it never did, or a workload died."""
        t0, c0 = time.monotonic(), self.counter()
        while time.monotonic() - t0 < timeout_s:
            if not self.alive():
                raise Unavailable(f"{self.name}: the workload exited early")
            if self.counter() > c0 or not self.counted:
                return time.monotonic() - t0
            time.sleep(0.2)
        raise Unavailable(f"{self.name}: no evidence after {timeout_s:.0f} s ({self.evidence_name} did not move)")

    def stop(self) -> None:
        for p in self._procs():
            _kill(p)

    def _procs(self) -> list[subprocess.Popen]:
        return [p for p in getattr(self, "procs", []) if p is not None]

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()


class CpuHogs(Interference):
    name = "cpu"
    counted = False

    def __init__(self, cpus: int = os.cpu_count() or 2):
        self.cpus = cpus
        self.procs = []

    def describe(self) -> str:
        return f"stress-ng --cpu {self.cpus} --vm 1 --vm-bytes 256M"

    def start(self) -> None:
        if not shutil.which("stress-ng"):
            raise Unavailable("stress-ng is not installed (apt-get install stress-ng)")
        self.procs = [_spawn(["stress-ng", "--cpu", str(self.cpus), "--vm", "1", "--vm-bytes", "256M", "--quiet"])]
        time.sleep(1.0)  # the 256M vm worker gets going


WSF_PATH = "/proc/sys/vm/watermark_scale_factor"
WSF_MAX = 3000  # the kernel's bound: watermark gaps of 30% of memory
RAMP_BYTES = 1 << 30  # what the streamer takes before kswapd wakes (at 40-140 MB/s here: 10-25 s)


class Streamer(Interference):
    """Page-cache pressure: stream a sparse file bigger than memory at `mbps`.

    Filling a large machine's free memory takes minutes on a VM (measured here: new pages arrive at
    40-140 MB/s, the host faults each one in), so the kswapd kind also raises
    vm.watermark_scale_factor for its duration (restored by stop(), and at exit): the low watermark
    moves up towards the free memory there is, kswapd wakes once the streamer has taken the rest,
    and reclaims clean cache from then on. `raise_watermarks=False` leaves it alone."""

    name = "kswapd"
    evidence_name = "pgscan_kswapd"

    def __init__(self, mbps: int = 400, base: str | None = None, raise_watermarks: bool = True):
        self.mbps, self.base, self.raise_wm = mbps, base, raise_watermarks
        self.procs, self.dir, self.wsf_saved = [], None, None

    def describe(self) -> str:
        wm = f", vm.watermark_scale_factor {self.wsf_set} (was {self.wsf_saved})" if self.wsf_saved else ""
        return (f"page-cache streamer at {self.mbps} MB/s over a 1 TiB sparse file (no swap: kswapd "
                f"evicts clean cache){wm}")

    wsf_set = None

    def _raise_watermarks(self) -> None:
        """Set the watermark gap to the free memory less RAMP_BYTES (at most WSF_MAX), saving the
        value: kswapd wakes once the streamer has taken about RAMP_BYTES. (It then reclaims up to
        the high watermark, one gap above the low one: the pressure is machine-wide, as it is
        when a real neighbour fills memory.)"""
        managed = _managed_bytes()
        if not managed or not os.access(WSF_PATH, os.W_OK):
            return
        self.wsf_saved = _read(WSF_PATH)
        gap = max(0, _mem_free() - RAMP_BYTES)
        want = min(WSF_MAX, max(int(self.wsf_saved), int(gap * 10000 / managed)))
        _write(WSF_PATH, str(want))
        self.wsf_set = want
        import atexit
        atexit.register(self._restore_watermarks)

    def _restore_watermarks(self) -> None:
        if self.wsf_saved is not None:
            _write(WSF_PATH, self.wsf_saved)
            self.wsf_saved = self.wsf_set = None

    def counter(self) -> int:
        return vmstat("pgscan_kswapd")

    def _file(self) -> str:
        self.dir = disk_dir(self.base)
        path = os.path.join(self.dir, "sparse")
        with open(path, "wb") as f:
            f.truncate(SPARSE_BYTES)
        return path

    def start(self) -> None:
        path = self._file()
        # full speed until free memory reaches the watermarks, then the set rate. The streamer
        # removes its file, and puts the watermark setting back, when it is stopped: also when we
        # die first (PDEATHSIG), so a benchmark killed with -9 leaves neither behind. It is ready
        # (its clean-up installed) before the watermarks are raised.
        back = []
        if self.raise_wm and os.access(WSF_PATH, os.W_OK):
            back = ["--restore-wsf", _read(WSF_PATH)]
        self.procs = [_spawn_helper([sys.executable, HERE, "reader", path, "--mbps", str(self.mbps), "--ramp",
                                     "--cleanup", self.dir, *back])]
        if back:
            self._raise_watermarks()

    def ready(self, timeout_s: float = 240.0) -> float:  # the ramp (see the class docstring)
        return super().ready(timeout_s)

    def stop(self) -> None:
        super().stop()
        self._restore_watermarks()
        if self.dir:
            _drop_cache(os.path.join(self.dir, "sparse"))
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class Memcg(Streamer):
    """This process in a memory-limited cgroup with a streamer inside it (cgroup v1 or v2)."""

    name = "memcg"

    def __init__(self, headroom_mb: int = 256, mbps: int = 400, base: str | None = None):
        super().__init__(mbps, base, raise_watermarks=False)
        self.headroom = headroom_mb << 20
        self.cg = self.home = None
        self.v2 = False

    @property
    def evidence_name(self) -> str:
        return "memory.events max" if self.v2 else "memory.failcnt"

    def describe(self) -> str:
        return (f"this process in a memory cgroup limited to its usage + {self.headroom >> 20} MB "
                f"({'v2 memory.max' if self.v2 else 'v1 memory.limit_in_bytes'}), with a page-cache streamer "
                f"inside at {self.mbps} MB/s")

    def counter(self) -> int:
        if not self.cg:
            return 0
        if self.v2:
            for line in _read(f"{self.cg}/memory.events").splitlines():
                if line.startswith("max "):
                    return int(line.split()[1])
            return 0
        return int(_read(f"{self.cg}/memory.failcnt") or 0)

    def _locate(self) -> None:
        """Our memory cgroup directory: v1's memory hierarchy, else the v2 unified one."""
        with open("/proc/self/cgroup") as f:
            lines = [ln.strip().split(":", 2) for ln in f if ln.strip()]
        for _, ctrls, rel in lines:
            if "memory" in ctrls.split(","):
                for root in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup"):
                    if os.path.exists(f"{root}{rel}/memory.limit_in_bytes"):
                        self.home = f"{root}{rel}".rstrip("/")
                        return
        for hid, ctrls, rel in lines:
            if hid == "0":
                for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                    d = f"{root}{rel}".rstrip("/")
                    if "memory" in _read(f"{d}/cgroup.controllers").split():
                        self.home, self.v2 = d, True
                        return
        raise Unavailable("no memory cgroup controller is available to this process (v1 memory hierarchy "
                          "or v2 with the memory controller)")

    def start(self) -> None:
        self._locate()
        cg = f"{self.home}/itts-bench-{os.getpid()}"
        try:
            os.mkdir(cg)
        except OSError as e:
            raise Unavailable(f"cannot create a cgroup under {self.home}: {e.strerror}") from None
        self.cg = cg
        if self.v2:
            _write(f"{self.home}/cgroup.subtree_control", "+memory")  # raises if the parent has processes
        # Our pages charged so far stay with the old cgroup (v1's charge moving is gone in recent
        # kernels, v2 never had it): what the limit squeezes is every page we touch from now on
        # (each request's new memory, file pages faulted back in) and the streamer's cache.
        _write(f"{cg}/cgroup.procs", str(os.getpid()))
        usage = int(_read(f"{cg}/memory.current" if self.v2 else f"{cg}/memory.usage_in_bytes"))
        _write(f"{cg}/memory.max" if self.v2 else f"{cg}/memory.limit_in_bytes", str(usage + self.headroom))
        path = self._file()
        # forked from this process: born in the cgroup
        self.procs = [_spawn_helper([sys.executable, HERE, "reader", path, "--mbps", str(self.mbps),
                                     "--cleanup", self.dir, "--cgroup", cg, "--cgroup-home", self.home])]

    def stop(self) -> None:
        super().stop()  # the streamer first: its cache is what the limit holds
        if self.cg:
            try:
                _write(f"{self.home}/cgroup.procs", str(os.getpid()))  # back home, every thread
            finally:
                for _ in range(50):  # the killed streamer may take a moment to leave
                    try:
                        os.rmdir(self.cg)  # v1 moves the remaining charges to the parent
                        break
                    except OSError:
                        time.sleep(0.1)
                self.cg = None


class Writer(Interference):
    name = "writeback"
    evidence_name = "nr_written"

    def __init__(self, mbps: int = 100, fsync_mb: int = 16, base: str | None = None):
        self.mbps, self.fsync_mb, self.base = mbps, fsync_mb, base
        self.procs, self.dir = [], None

    def describe(self) -> str:
        return f"writer dirtying a 256 MB file at {self.mbps} MB/s, fsync every {self.fsync_mb} MB"

    def counter(self) -> int:
        return vmstat("nr_written")

    def start(self) -> None:
        self.dir = disk_dir(self.base)
        self.procs = [_spawn_helper([sys.executable, HERE, "writer", os.path.join(self.dir, "dirty"),
                                     "--mbps", str(self.mbps), "--fsync-mb", str(self.fsync_mb),
                                     "--cleanup", self.dir])]

    def stop(self) -> None:
        super().stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class Flood(Interference):
    name = "softirq"
    evidence_name = "NET_RX softirqs"

    def __init__(self, pairs: int = 1):
        self.pairs = pairs
        self.procs = []

    def describe(self) -> str:
        return f"stress-ng --udp {self.pairs} (a UDP flood over loopback: NET_RX softirqs)"

    def counter(self) -> int:
        return softirqs("NET_RX")

    def start(self) -> None:
        if not shutil.which("stress-ng"):
            raise Unavailable("stress-ng is not installed (apt-get install stress-ng)")
        self.procs = [_spawn(["stress-ng", "--udp", str(self.pairs), "--udp-domain", "ipv4", "--quiet"])]


def make(kind: str, **kw) -> Interference:
    """A workload by kind name (KINDS); kw: cpus, mbps, headroom_mb, base."""
    if kind == "cpu":
        return CpuHogs(kw.get("cpus") or os.cpu_count() or 2)
    if kind == "kswapd":
        return Streamer(kw.get("mbps", 400), kw.get("base"))
    if kind == "memcg":
        return Memcg(kw.get("headroom_mb", 256), kw.get("mbps", 400), kw.get("base"))
    if kind == "writeback":
        return Writer(kw.get("write_mbps", 100), base=kw.get("base"))
    if kind == "softirq":
        return Flood()
    raise ValueError(f"unknown interference kind {kind!r}; known: {', '.join(KINDS)}")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _drop_cache(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# -------------------------------------------------------------- the workload processes ----
def _paced(mbps: float):
    """Yields once per MB, sleeping so the average stays at mbps (0: no limit)."""
    t0, n = time.monotonic(), 0
    while True:
        yield
        n += 1
        if mbps > 0:
            ahead = n / mbps - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)


def _low_watermark_bytes() -> int:
    """Sum of the zones' low watermarks (pages) from /proc/zoneinfo, in bytes."""
    total = 0
    with open("/proc/zoneinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "low":
                total += int(parts[1])
    return total * os.sysconf("SC_PAGE_SIZE")


def _managed_bytes() -> int:
    """Memory the page allocator manages (the base of watermark_scale_factor), from /proc/zoneinfo."""
    total = 0
    with open("/proc/zoneinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "managed":
                total += int(parts[1])
    return total * os.sysconf("SC_PAGE_SIZE")


def _mem_free() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemFree:"):
                return int(line.split()[1]) << 10
    return 0


def _clean_up_on_term(path: str, cleanup: str | None, restore_wsf: str | None,
                      cgroup: str | None = None, home: str | None = None) -> None:
    """On SIGTERM (stop(), or the benchmark's death through PDEATHSIG): the watermark setting back,
    the file's page cache dropped, its directory removed, this process out of the benchmark's
    cgroup and the cgroup removed (it is empty once the benchmark is dead); then say ready."""
    def term(*_):
        if restore_wsf is not None:
            _write(WSF_PATH, restore_wsf)
        _drop_cache(path)
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
        if cgroup and home:
            try:
                _write(f"{home}/cgroup.procs", str(os.getpid()))
                os.rmdir(cgroup)  # fails while the benchmark is in it: stop() removes it then
            except OSError:
                pass
        os._exit(0)
    signal.signal(signal.SIGTERM, term)
    print("ready", flush=True)


def reader(path: str, mbps: float, ramp: bool, cleanup: str | None = None, restore_wsf: str | None = None,
           cgroup: str | None = None, home: str | None = None) -> None:
    """Read `path` front to back in 1 MB chunks, forever (new pages each time: the file is larger
    than memory). --ramp: no rate limit until free memory is down to twice the low watermark."""
    _clean_up_on_term(path, cleanup, restore_wsf, cgroup, home)
    buf = bytearray(CHUNK)
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    off = 0
    if ramp:
        floor = 2 * _low_watermark_bytes()
        while _mem_free() > floor:
            for _ in range(64):
                os.preadv(fd, [buf], off)
                off = (off + CHUNK) % size
    for _ in _paced(mbps):
        os.preadv(fd, [buf], off)
        off = (off + CHUNK) % size


def writer(path: str, mbps: float, fsync_mb: int, cleanup: str | None = None, size_mb: int = 256) -> None:
    """Overwrite a size_mb file in 1 MB writes at mbps, fsync every fsync_mb MB, forever."""
    _clean_up_on_term(path, cleanup, None)
    buf = os.urandom(CHUNK)  # not zeros: nothing on the way may skip them
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    n = 0
    for _ in _paced(mbps):
        os.pwrite(fd, buf, (n % size_mb) * CHUNK)
        n += 1
        if n % fsync_mb == 0:
            os.fsync(fd)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="workload processes of benchmarks/interference.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reader")
    r.add_argument("path")
    r.add_argument("--mbps", type=float, default=400)
    r.add_argument("--ramp", action="store_true")
    r.add_argument("--restore-wsf", default=None)
    r.add_argument("--cleanup", default=None)
    r.add_argument("--cgroup", default=None)
    r.add_argument("--cgroup-home", default=None)
    w = sub.add_parser("writer")
    w.add_argument("path")
    w.add_argument("--mbps", type=float, default=100)
    w.add_argument("--fsync-mb", type=int, default=16)
    w.add_argument("--cleanup", default=None)
    a = ap.parse_args(argv)
    if a.cmd == "reader":
        reader(a.path, a.mbps, a.ramp, a.cleanup, a.restore_wsf, a.cgroup, a.cgroup_home)
    else:
        writer(a.path, a.mbps, a.fsync_mb, a.cleanup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
