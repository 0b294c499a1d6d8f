"""The device view's capture, beside the engine call (wiring: torch is imported here, never in tracing/).

    dv = DeviceCapture(engine, window, level)      # in Service._run
    with window, dv:
        result = engine.synthesize(...)
    attach(dv, breakdown, clip_dir)                # in Service._analyse, on the aux thread

When the serving engine runs on CUDA (and the level is "auto"), each traced request runs inside a
torch.profiler session with CUDA activity only (`activities=[CUDA]`: runtime calls with their tids,
kernels, memcpys and memsets, no CPU-op instrumentation), and the clock marks of tracing/clock.py go
into the trace window: one at the start, one at the end, and a probe right before a
torch.cuda.synchronize() that the profile records too. Elsewhere the device section says why there
is none (engine on CPU, tracing off, schedstat mode, --device-view off) and nothing else happens.
A session per request (pytorch#192021 corrupts the first kernel records of later sessions): the
parser drops records that start before their own launch and counts them (tracing/kineto.py).
The profile is exported as Kineto JSON on the aux thread (`attach`), parsed, joined with the
breakdown (tracing/device.py) and carried in the attachment as device_profile.json (opens in
ui.perfetto.dev and in Holistic Trace Analysis).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time

from tracing import clock as C
from tracing import device as D
from tracing import kineto

log = logging.getLogger("device_view")

LEVELS = ("auto", "off", "cpu")  # auto: on for CUDA engines; cpu: CPU activity only (tests, dry runs)
PROFILE_NAME = "device_profile.json"
_SAMPLES = 5  # clock reads per mark; the narrowest bracket wins (a preempted read is wide)


def engine_device(engine) -> str:
    """The torch device the engine computes on ("cuda:0", "cpu"); "cpu" when it does not say
    (the builtin engine). The replica has `.device`; IndexTTS's object has `.device` (a string)."""
    for obj in (engine, getattr(engine, "tts", None)):
        dev = getattr(obj, "device", None) if obj is not None else None
        if dev is not None:
            return str(dev)
    return "cpu"


def cuda_bus_id(device: str) -> tuple[str | None, str]:
    """(PCI bus id of a CUDA device, where it came from) or (None, why not)."""
    if not device.startswith("cuda"):
        return None, f"the serving engine runs on {device}, not on a GPU"
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None, "CUDA is not available to torch"
    idx = torch.device(device).index or 0
    props = torch.cuda.get_device_properties(idx)
    bus = getattr(props, "pci_bus_id", None)
    if isinstance(bus, int):  # torch gives bus/device/domain numbers as separate ints
        return (f"{getattr(props, 'pci_domain_id', 0):04x}:{bus:02x}:{getattr(props, 'pci_device_id', 0):02x}.0",
                f"torch.cuda.get_device_properties({idx})")
    if isinstance(bus, str) and bus:
        return bus, f"torch.cuda.get_device_properties({idx})"
    import subprocess
    try:
        out = subprocess.run(["nvidia-smi", f"--id={idx}", "--query-gpu=pci.bus_id", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        return (out, "nvidia-smi") if out else (None, "nvidia-smi printed no bus id")
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"no PCI bus id for {device}: {e}"


def _mark(window) -> None:
    """One clock marker into the window: REALTIME bracketed by two MONOTONIC reads."""
    samples = []
    for _ in range(_SAMPLES):
        m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        rt = time.time_ns()
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        samples.append((m0, rt, m1))
    window.marker(C.clock_marker(*C.best_sample(samples)))


class DeviceCapture:
    """Context manager around the engine call (inside the trace window); see the module docstring.
    Level "cpu" is for machines without a GPU (tests, the device script's dry run): the same real
    profiler session, clock marks, export, parse and attachment with CPU activity instead of CUDA,
    so everything but the kernels is exercised."""

    def __init__(self, engine, window, level: str = "auto"):
        if level not in LEVELS:
            raise ValueError(f"device view level must be one of {LEVELS}, got {level!r}")
        self.window, self.level = window, level
        self.device = engine_device(engine)
        self.activities = ("cpu",) if level == "cpu" else None
        self.why = self._why_not()
        self.prof = None
        self.tid = None

    def _why_not(self) -> str | None:
        if self.window is None:
            return "tracing was off for this request"
        if self.level == "off":
            return "the device view is off (--device-view off)"
        if self.activities is not None:
            return None
        if not self.device.startswith("cuda"):
            return f"the serving engine runs on {self.device}: there is no GPU side to profile"
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available():
            return "CUDA is not available to torch"
        return None

    @property
    def active(self) -> bool:
        return self.why is None

    def __enter__(self):
        if not self.active:
            return self
        caps = getattr(self.window, "caps", None)
        if caps is not None and caps.mode != "full":
            self.why = "the trace window is in schedstat mode: no kernel trace to join the profile with"
            return self
        import torch
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] if self.activities == ("cpu",) else [ProfilerActivity.CUDA]
        self.tid = os.gettid() if hasattr(os, "gettid") else None
        try:
            self.prof = profile(activities=acts)
            self.prof.__enter__()
        except Exception as e:  # a profiler that will not start must not fail the request
            log.warning("device profiler did not start: %s", e)
            self.prof, self.why = None, f"torch.profiler did not start ({type(e).__name__}: {e})"
            return self
        _mark(self.window)
        if acts == [ProfilerActivity.CUDA]:
            self.window.marker(C.PROBE_TEXT)
            torch.cuda.synchronize()  # the probe: recorded by the profile, next to its marker
        return self

    def __exit__(self, et, ev, tb):
        if self.prof is None:
            return False
        try:
            if self.activities is None:
                import torch
                torch.cuda.synchronize()  # every kernel of the request has run (and is recorded)
            _mark(self.window)
        finally:
            try:
                self.prof.__exit__(None, None, None)
            except Exception as e:
                log.warning("device profiler did not stop cleanly: %s", e)
                self.prof, self.why = None, f"torch.profiler failed to stop ({type(e).__name__}: {e})"
        return False

    def export(self, dest) -> str:
        """Write the Kineto JSON to `dest` (on the aux thread); returns its path."""
        self.prof.export_chrome_trace(str(dest))
        return str(dest)


def _status_texts() -> dict:
    out = {}
    try:
        for t in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{t}/status") as fh:
                    out[int(t)] = fh.read()
            except OSError:
                pass
    except OSError:
        pass
    return out


def attach(dv: DeviceCapture | None, bd: dict, clip_dir) -> str | None:
    """Set bd["device"] (the section, or why there is none) and the thread rows' gpu_wait_s; return
    the exported profile's path (a hidden file in the clip directory, zipped into the attachment
    as device_profile.json), or None. Never raises: a failure becomes the section's `why`."""
    if dv is None or dv.prof is None:
        bd["device"] = D.absent(dv.why if dv is not None and dv.why else "no device capture for this request")
        D.annotate_threads(bd)
        return None
    path = None
    try:
        path = dv.export(os.path.join(str(clip_dir), "." + PROFILE_NAME))
        with open(path) as fh:
            doc = json.load(fh)
        tid_map = kineto.nspid_map(_status_texts())
        prof = kineto.parse_profile(doc, tid_map)
        bd["device"] = D.device_section(prof, bd, C.alignment(bd.get("markers")))
        if bd["device"].get("status") == "captured":  # kept so an offline re-read maps tids the same way
            bd["device"]["profile"]["tid_map"] = {str(k): v for k, v in tid_map.items()}
        bd["device"]["activities"] = "cpu (test)" if dv.activities == ("cpu",) else "cuda"
    except Exception as e:  # reporting never undoes collection: the breakdown stays
        log.exception("device view failed")
        bd["device"] = {"status": "failed", "why": f"the device profile could not be analysed ({type(e).__name__}: {e})"}
    D.annotate_threads(bd)
    return path


def offer_gpu_local(engine, presets, allowed_cpus, sysfs_root: str = "/sys"):
    """At launch: the GPU-local preset for the engine's CUDA device (tuning/gpu_local.py), put into
    `presets` (offered, or refused with the reason); returns the GpuLocal for the Scheduling tab."""
    from tuning import gpu_local
    try:
        bus, how = cuda_bus_id(engine_device(engine))
    except Exception as e:  # a driver that will not say must not stop the launch
        bus, how = None, f"the GPU's PCI bus id could not be read ({type(e).__name__}: {e})"
    gl = gpu_local.gpu_local(bus, sysfs_root, allowed_cpus, no_gpu_reason=how)
    if bus:
        gl.bus_from = how
    gpu_local.offer(presets, gl)
    return gl
