"""A torch.profiler / Kineto trace (its Chrome-trace JSON) -> the device's facts (pure, no I/O).

What is read (pytorch/kineto libkineto/src/output_json.cpp), everything else is ignored:
  GPU activity   `cat` "kernel", "gpu_memcpy", "gpu_memset": `pid` = device, `tid` = stream (an int,
                 or a label such as "stream 7"; `args.device` / `args.stream` win when present),
                 `args.correlation` links it to its launch.
  runtime calls  `cat` "cuda_runtime" (and "cuda_driver"): cudaLaunchKernel, cudaMemcpyAsync,
                 cudaStreamSynchronize, ... with `tid` = the Linux tid of the calling thread
                 (gettid; a namespace tid inside a container, mapped with `tid_map`, see nspid_map)
                 and `args.correlation`.
Times: `ts`/`dur` are microseconds with 3 decimals. Current Kineto writes `ts` relative to the
top-level `baseTimeNanoseconds` (CLOCK_REALTIME, rounded down); older traces have no base and
absolute Unix microseconds. Both become integer CLOCK_REALTIME nanoseconds here (the absolute
form carries float rounding: ~0.25 us at today's epoch), so the caller can put them on the kernel
trace's clock (tracing/clock.py).
Known corruption (pytorch#192021): a profiler session started after an earlier one in the same
process can report its first kernel records with the timestamps of stale activity; such a record
starts before its own launch call, which no real kernel can. Those records are dropped and counted
(`Profile.dropped_before_launch`), never analysed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

GPU_CATS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "gpu_memset": "memset"}
RUNTIME_CATS = ("cuda_runtime", "cuda_driver")
# Runtime calls that make the calling thread wait for the device (PyTorch's .item(), .cpu(),
# torch.cuda.synchronize(), a pageable memcpy). cudaMemcpy without Async is synchronous;
# cudaMemcpyAsync from pageable memory is too, but the profile does not say which memory it was.
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaMemcpy",
              "cudaMemcpy2D", "cudaMemset", "cudaStreamWaitEvent", "cuCtxSynchronize", "cuStreamSynchronize",
              "cuEventSynchronize", "cuMemcpyDtoH_v2", "cuMemcpyHtoD_v2")
_DIGITS = re.compile(r"-?\d+")


class ProfileError(ValueError):
    """Not a Kineto trace we can read (the message says what is missing)."""


@dataclass
class Profile:
    """Columns, times in CLOCK_REALTIME ns (int64), sorted by start.
    gpu_*: kernels, memcpys and memsets (kind: "kernel" | "memcpy" | "memset"); call_*: runtime
    calls. gpu_launch_idx: index into call_* of each activity's launch (-1 when none matched)."""
    gpu_device: np.ndarray
    gpu_stream: np.ndarray
    gpu_start: np.ndarray
    gpu_end: np.ndarray
    gpu_corr: np.ndarray
    gpu_kind: list
    gpu_name: list
    gpu_launch_idx: np.ndarray
    call_tid: np.ndarray
    call_start: np.ndarray
    call_end: np.ndarray
    call_corr: np.ndarray
    call_name: list
    time_format: str  # "base" (baseTimeNanoseconds + relative us) | "absolute" (Unix us)
    dropped_before_launch: int = 0
    devices: list = field(default_factory=list)  # deviceProperties as written (name, ...)

    def is_sync(self) -> np.ndarray:
        """Per runtime call: does it make the calling thread wait for the device?"""
        return np.array([n in SYNC_CALLS for n in self.call_name], dtype=bool)


def _int(v, default: int = -1) -> int:
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        m = _DIGITS.search(v)  # "stream 7", "7"
        if m:
            return int(m.group())
    return default


def _time_base(doc: dict) -> tuple[int, str]:
    base = doc.get("baseTimeNanoseconds")
    if isinstance(base, (int, float)) and not isinstance(base, bool) and base > 0:
        return int(base), "base"
    return 0, "absolute"


def parse_profile(doc: dict, tid_map: dict | None = None) -> Profile:
    """The Kineto JSON (already loaded) -> Profile. tid_map: {tid in the profile: tid in the
    kernel trace} (namespace ids, see nspid_map); tids it does not list are kept as they are."""
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        raise ProfileError("not a Kineto/Chrome trace: no traceEvents list")
    base, fmt = _time_base(doc)
    tmap = tid_map or {}

    def ns(ts, dur=0.0):
        # us with 3 decimals -> ns; rounding to the ns undoes the float's binary noise
        a = base + int(round(float(ts) * 1000.0))
        return a, a + max(0, int(round(float(dur) * 1000.0)))
    g_dev, g_stream, g_a, g_b, g_corr, g_kind, g_name = [], [], [], [], [], [], []
    c_tid, c_a, c_b, c_corr, c_name = [], [], [], [], []
    for e in doc["traceEvents"]:
        if not isinstance(e, dict) or e.get("ph") != "X":
            continue
        cat, ts, dur = e.get("cat"), e.get("ts"), e.get("dur", 0)
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not isinstance(dur, (int, float)):
            continue
        args = e.get("args") if isinstance(e.get("args"), dict) else {}
        if cat in GPU_CATS:
            a, b = ns(ts, dur)
            g_dev.append(_int(args.get("device", e.get("pid")), 0))
            g_stream.append(_int(args.get("stream", e.get("tid")), 0))
            g_a.append(a), g_b.append(b)
            g_corr.append(_int(args.get("correlation")))
            g_kind.append(GPU_CATS[cat])
            g_name.append(str(e.get("name", "?")))
        elif cat in RUNTIME_CATS:
            a, b = ns(ts, dur)
            tid = _int(e.get("tid"))
            c_tid.append(int(tmap.get(tid, tid)))
            c_a.append(a), c_b.append(b)
            c_corr.append(_int(args.get("correlation")))
            c_name.append(str(e.get("name", "?")))
    I = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    co = np.argsort(I(c_a), kind="stable")
    c_tid, c_a, c_b, c_corr = I(c_tid)[co], I(c_a)[co], I(c_b)[co], I(c_corr)[co]
    c_name = [c_name[i] for i in co.tolist()]
    go = np.argsort(I(g_a), kind="stable")
    g_dev, g_stream, g_a, g_b, g_corr = I(g_dev)[go], I(g_stream)[go], I(g_a)[go], I(g_b)[go], I(g_corr)[go]
    g_kind = [g_kind[i] for i in go.tolist()]
    g_name = [g_name[i] for i in go.tolist()]
    launch = _match(g_corr, c_corr)
    # pytorch#192021: an activity that starts before its own launch call began is stale data
    bad = (launch >= 0) & (g_a < np.where(launch >= 0, c_a[np.maximum(launch, 0)], 0))
    keep = ~bad
    devices = [d for d in doc.get("deviceProperties") or [] if isinstance(d, dict)]
    return Profile(g_dev[keep], g_stream[keep], g_a[keep], g_b[keep], g_corr[keep],
                   [k for k, ok in zip(g_kind, keep.tolist()) if ok], [n for n, ok in zip(g_name, keep.tolist()) if ok],
                   launch[keep], c_tid, c_a, c_b, c_corr, c_name, fmt, int(bad.sum()), devices)


def _match(g_corr: np.ndarray, c_corr: np.ndarray) -> np.ndarray:
    """For each activity, the index of the runtime call with the same correlation id (-1: none)."""
    out = np.full(len(g_corr), -1, dtype=np.int64)
    ok = c_corr >= 0
    if not len(g_corr) or not ok.any():
        return out
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(c_corr[idx], kind="stable")]
    keys = c_corr[order]
    pos = np.searchsorted(keys, g_corr)
    pos_c = np.minimum(pos, len(keys) - 1)
    hit = (g_corr >= 0) & (pos < len(keys)) & (keys[pos_c] == g_corr)
    out[hit] = order[pos_c[hit]]
    return out


def nspid_map(status_texts: dict) -> dict:
    """{tid in the innermost pid namespace: tid as the reader sees it} from /proc/<tid>/status
    texts ({reader's tid: text}). Their `NSpid:` line lists the ids from the reader's namespace
    inward ("NSpid:\t48211\t17": 17 inside a container is 48211 here). Where the thread lives in
    the reader's own namespace (one id), nothing needs mapping and nothing is returned for it."""
    out = {}
    for tid, text in status_texts.items():
        for line in str(text).splitlines():
            if line.startswith("NSpid:"):
                ids = [int(x) for x in line.split()[1:] if x.isdigit()]
                if len(ids) > 1 and ids[-1] != ids[0]:
                    out[ids[-1]] = ids[0]
                break
    return out
