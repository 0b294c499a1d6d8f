"""Launch-time preset: `--preset NAME` plus raw `--cpus/--nice/--policy/--rt-priority` flags.

The result equals wrapping the launch in `taskset -c LIST nice -n N chrt -<policy> PRIO`, with two
deliberate differences: `--nice` is absolute (the same as `nice -n N` from a shell at nice 0), and
real-time policies carry SCHED_RESET_ON_FORK and an RLIMIT_RTTIME net (like `chrt -R`), and need
`--allow-realtime`. Reset-on-fork also applies to threads: a thread created after a real-time
launch starts as SCHED_OTHER until the tuner's `ensure()` (run at each request) lifts it, whereas
under plain `chrt -f` it would inherit FIFO. That is the price of child processes not inheriting RT. webui.py calls `apply_launch` before torch/gradio start threads; it still
applies to every thread that exists, so calling it later is correct too, only less complete for
pools that size themselves at start (torch picks its intra-op count from the affinity at import).
Raw flags override the named preset's fields.
"""
from __future__ import annotations

import argparse

from .kernel import POLICIES
from .presets import COMPUTED, Preset, PresetError, check_cpu_spec


def _cpus_arg(text: str) -> str:
    try:
        check_cpu_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _int_range(lo: int, hi: int):
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside {lo}..{hi}")
        return v
    return conv


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("scheduling (taskset / nice / chrt semantics, applied at launch)")
    g.add_argument("--preset", default=None, metavar="NAME",
                   help="scheduling preset to launch with (see tuning/presets.toml and --presets)")
    g.add_argument("--cpus", type=_cpus_arg, default=None, metavar="LIST",
                   help='CPUs like taskset -c ("0,2-3"), or "last:N" / "first:N" / "all"')
    g.add_argument("--nice", type=_int_range(-20, 19), default=None, metavar="N",
                   help="absolute nice value -20..19 (below the current one needs root/CAP_SYS_NICE)")
    g.add_argument("--policy", choices=tuple(POLICIES), default=None,
                   help="scheduling policy like chrt (fifo/rr need --allow-realtime)")
    g.add_argument("--rt-priority", type=_int_range(0, 99), default=None, metavar="N",
                   help="real-time priority 1..99 for --policy fifo/rr")
    g.add_argument("--presets", default=None, metavar="PATH",
                   help="operator preset file (TOML): adds/replaces presets, `allowed = [...]` limits the UI")
    g.add_argument("--allow-realtime", action="store_true",
                   help="permit SCHED_FIFO/SCHED_RR presets (RLIMIT_RTTIME and reset-on-fork are set)")
    g.add_argument("--force-realtime", action="store_true",
                   help="permit real-time even when RT throttling is off (sched_rt_runtime_us = -1)")


def launch_preset(args, presets) -> Preset | None:
    """The preset the flags describe (named preset with raw flags on top), or None for none."""
    raw = {k: getattr(args, k, None) for k in ("cpus", "nice", "policy", "rt_priority")}
    raw = {k: v for k, v in raw.items() if v is not None}
    name = getattr(args, "preset", None)
    if name is None and not raw:
        return None
    if name is not None and name not in presets:
        raise PresetError(f"unknown preset {name!r} for --preset; known: {', '.join(presets)}")
    base = presets[name].to_dict() if name else {"name": "launch", "description": ""}
    if not raw:
        return presets[name]
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in raw.items())
    if "policy" in raw and raw["policy"] not in ("fifo", "rr") and "rt_priority" not in raw:
        raw["rt_priority"] = 0  # chrt -o/-b/-i take priority 0
    if "rt_priority" in raw and "policy" not in raw and raw["rt_priority"] and base.get("policy") not in ("fifo", "rr"):
        raise PresetError("--rt-priority needs --policy fifo or rr (like chrt -f N)")
    if raw.get("policy") in ("fifo", "rr") and "rt_priority" not in raw and base.get("policy") not in ("fifo", "rr"):
        raise PresetError(f"--policy {raw['policy']} needs --rt-priority 1..99 (like chrt -f N)")
    base.update(raw)
    base["name"] = "launch"
    base["description"] = (f"launch flags {flags}" + (f" over preset {name!r}" if name else ""))
    return Preset(**base)


def deferred_preset(args) -> str | None:
    """A computed preset named by --preset (gpu-local exists once the engine knows its GPU): taken
    off `args`, so the launch applies nothing, and returned for the wiring to apply after the engine
    has loaded. Raw scheduling flags cannot be layered on it."""
    name = getattr(args, "preset", None)
    if name not in COMPUTED:
        return None
    if any(getattr(args, k, None) is not None for k in ("cpus", "nice", "policy", "rt_priority")):
        raise PresetError(f"--preset {name} is computed after the engine loads: it cannot be combined with "
                          f"--cpus/--nice/--policy/--rt-priority")
    args.preset = None
    return name


def apply_launch(args, presets) -> Preset | None:
    """Apply the launch flags to every thread of this process; returns the preset applied (hand it
    to `Tuner.adopt`) or None when no scheduling flag was given. Raises PresetError for bad flags
    and TuningError when refused (nothing changed)."""
    from .apply import Tuner

    preset = launch_preset(args, presets)
    if preset is None:
        return None
    tuner = Tuner({preset.name: preset}, allow_realtime=getattr(args, "allow_realtime", False),
                  force_realtime=getattr(args, "force_realtime", False))
    tuner.apply(preset.name)
    tuner.close()  # the service's own Tuner installs the SIGXCPU handler it reports through
    return preset
