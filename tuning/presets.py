"""Scheduling presets: data only (load, validate, resolve CPU specs). Nothing here touches threads.

A preset names what `taskset -c`, `nice -n` and `chrt` would set, plus torch's intra-op thread
count. ``None`` in a field means "inherit": keep what the process had when it was launched. The
defaults ship in ``presets.toml`` next to this file; its header documents the format.
"""
from __future__ import annotations

import os
import re
try:
    import tomllib
except ImportError:  # Python 3.10 (IndexTTS v2.0.0's envs): the same parser as the tomli package
    import tomli as tomllib
from dataclasses import dataclass, field

from .kernel import POLICIES

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets.toml")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FIELDS = {"cpus", "nice", "policy", "rt_priority", "torch_threads", "rt_budget_s", "away", "description"}
# what `away` may move off the synthesis CPUs (tuning/knobs.py: one get/set/restore unit each)
AWAY_KINDS = ("irqs", "workqueues", "kthreads")


class PresetError(ValueError):
    """An invalid preset or preset file. The message names the file and line when known."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(where + message)
        self.path, self.line = path, line


def parse_cpu_list(text: str) -> frozenset[int]:
    """taskset -c syntax: "0,2-3" -> {0, 2, 3}. Raises ValueError on anything else."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty CPU list")
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"bad CPU list item {part!r} (use e.g. \"0,2-3\")")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"bad CPU range {part!r} (high end below low end)")
        cpus.update(range(lo, hi + 1))
    return frozenset(cpus)


def resolve_cpus(spec: str, allowed) -> frozenset[int]:
    """Turn a preset's cpus spec into CPU numbers, relative forms against `allowed`
    (the CPUs the process was allowed at launch). Absolute lists are returned as written;
    checking them against online CPUs is the applier's job."""
    allowed = sorted(allowed)
    s = spec.strip().lower()
    if s == "all":
        return frozenset(allowed)
    m = re.fullmatch(r"(first|last):(\d+)", s)
    if m:
        n = int(m.group(2))
        if n < 1:
            raise ValueError(f"{spec!r}: N must be at least 1")
        return frozenset(allowed[:n] if m.group(1) == "first" else allowed[-n:])
    return parse_cpu_list(spec)


def check_cpu_spec(spec: str) -> None:
    """Syntax check only (resolution needs the machine)."""
    resolve_cpus(spec, range(1))


@dataclass(frozen=True)
class Preset:
    name: str
    cpus: str | None = None  # spec; see presets.toml
    nice: int | None = None
    policy: str | None = None  # key of kernel.POLICIES
    rt_priority: int = 0
    torch_threads: int | None = None
    description: str = ""
    source: str = field(default="", compare=False)  # file it came from (for messages)
    rt_budget_s: float | None = None  # fifo/rr: fixed per-request RLIMIT_RTTIME budget (tuning/rtbudget.py)
    away: tuple[str, ...] = ()  # AWAY_KINDS moved off the synthesis CPUs while in force (tuning/knobs.py)

    def __post_init__(self):
        if isinstance(self.away, list):  # from TOML
            object.__setattr__(self, "away", tuple(self.away))
        problem = _problem(self.name, self.cpus, self.nice, self.policy, self.rt_priority,
                           self.torch_threads, self.description, self.rt_budget_s, self.away)
        if problem:
            raise PresetError(f"preset {self.name!r}: {problem[1]}")

    @property
    def realtime(self) -> bool:
        return self.policy in ("fifo", "rr")

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in
             ("name", "cpus", "nice", "policy", "rt_priority", "torch_threads", "rt_budget_s", "description")}
        d["away"] = list(self.away)
        return d


def _problem(name, cpus=None, nice=None, policy=None, rt_priority=0, torch_threads=None,
             description="", rt_budget_s=None, away=()) -> tuple[str, str] | None:
    """(field, sentence) for the first invalid field, else None."""
    realtime = policy in ("fifo", "rr")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return "name", "name must be letters, digits, '-', '_' or '.' (max 64)"
    if cpus is not None:
        if not isinstance(cpus, str):
            return "cpus", "cpus must be a string such as \"0,2-3\" or \"last:1\""
        try:
            check_cpu_spec(cpus)
        except ValueError as e:
            return "cpus", f"cpus: {e}"
    if nice is not None and (not _is_int(nice) or not -20 <= nice <= 19):
        return "nice", f"nice must be an integer in -20..19, got {nice!r}"
    if policy is not None and policy not in POLICIES:
        return "policy", f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}"
    if not _is_int(rt_priority):
        return "rt_priority", f"rt_priority must be an integer, got {rt_priority!r}"
    if realtime and not 1 <= rt_priority <= 99:
        return "rt_priority", f"rt_priority must be 1..99 with policy {policy}, got {rt_priority}"
    if not realtime and rt_priority != 0:
        return "rt_priority", "rt_priority is only valid with policy fifo or rr (use 0 or leave it out)"
    if torch_threads is not None and (not _is_int(torch_threads) or torch_threads < 1):
        return "torch_threads", f"torch_threads must be a positive integer, got {torch_threads!r}"
    if rt_budget_s is not None:
        if isinstance(rt_budget_s, bool) or not isinstance(rt_budget_s, (int, float)) or not 0 < rt_budget_s <= 3600:
            return "rt_budget_s", f"rt_budget_s must be a number of seconds in (0, 3600], got {rt_budget_s!r}"
        if not realtime:
            return "rt_budget_s", "rt_budget_s is only valid with policy fifo or rr"
    if not isinstance(away, (list, tuple)) or any(a not in AWAY_KINDS for a in away):
        return "away", f"away must be a list of {', '.join(repr(k) for k in AWAY_KINDS)}, got {away!r}"
    if not isinstance(description, str):
        return "description", "description must be a string"
    return None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Presets computed at launch rather than read from a file (tuning/gpu_local.py); an operator's
# `allowed` list may name them before they exist.
COMPUTED = ("gpu-local",)


class PresetSet(dict):
    """name -> Preset, in file order, plus `allowed`: the names the UI/API may offer, `restricted`:
    whether an operator's file chose them, and `refused`: computed presets not available here,
    name -> why (tuning/gpu_local.py)."""

    def __init__(self, *a, allowed=None, **kw):
        super().__init__(*a, **kw)
        self.allowed: list[str] = list(allowed) if allowed is not None else list(self)
        self.restricted = allowed is not None
        self.refused: dict[str, str] = {}

    def offered(self) -> list["Preset"]:
        return [self[n] for n in self.allowed]


def load_presets(extra_path: str | None = None, default_path: str = DEFAULT_PATH) -> PresetSet:
    """Shipped defaults, then the operator's file (adds presets, replaces same-named ones whole;
    its top-level `allowed` list, if any, restricts what is offered). Raises PresetError naming
    the file and line of the first problem."""
    presets: dict[str, Preset] = {}
    allowed = None
    for path in (default_path, extra_path):
        if not path:
            continue
        loaded, file_allowed = _load_file(path)
        presets.update(loaded)
        if file_allowed is not None:
            allowed = (path, file_allowed)
    if allowed is None:
        return PresetSet(presets)
    path, names = allowed
    for n in names:
        if n not in presets and n not in COMPUTED:
            raise PresetError(f"allowed lists unknown preset {n!r}", path, _find_line(path, None, "allowed"))
    return PresetSet(presets, allowed=names)


def _load_file(path: str) -> tuple[dict[str, Preset], list[str] | None]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:  # its message carries "(at line L, column C)"
        m = re.search(r"line (\d+)", str(e))
        raise PresetError(f"not valid TOML: {e}", path, int(m.group(1)) if m else None) from None
    except OSError as e:
        raise PresetError(f"cannot read preset file: {e.strerror}", path) from None
    unknown_top = set(data) - {"presets", "allowed"}
    if unknown_top:
        key = sorted(unknown_top)[0]
        raise PresetError(f"unknown top-level key {key!r} (expected [presets.NAME] tables and `allowed`)",
                          path, _find_line(path, None, key) or _find_table_line(path, key))
    allowed = data.get("allowed")
    if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(n, str) for n in allowed)):
        raise PresetError("allowed must be a list of preset names", path, _find_line(path, None, "allowed"))
    tables = data.get("presets", {})
    if not isinstance(tables, dict):
        raise PresetError("presets must be tables: [presets.NAME]", path, _find_line(path, None, "presets"))
    out: dict[str, Preset] = {}
    for name, body in tables.items():
        if not isinstance(body, dict):
            raise PresetError(f"preset {name!r} must be a table", path, _find_line(path, "presets", name))
        extra = set(body) - _FIELDS
        if extra:
            key = sorted(extra)[0]
            raise PresetError(f"preset {name!r}: unknown field {key!r} (known: {', '.join(sorted(_FIELDS))})",
                              path, _find_line(path, f"presets.{name}", key))
        kwargs = dict(body)
        kwargs.setdefault("rt_priority", 0)
        problem = _problem(name=name, **kwargs)  # checked here first, to point at the field's line
        if problem:
            fld, msg = problem
            line = _find_line(path, f"presets.{name}", fld) if fld != "name" else None
            raise PresetError(f"preset {name!r}: {msg}", path, line or _find_table_line(path, f"presets.{name}"))
        out[name] = Preset(name=name, source=path, **kwargs)
    return out, allowed


# -- locating a table/key in the file, for semantic errors (tomllib only reports syntax errors) --

def _header_re(table: str) -> re.Pattern:
    parts = [rf"\s*(?:{re.escape(p)}|\"{re.escape(p)}\"|'{re.escape(p)}')\s*" for p in table.split(".", 1)]
    return re.compile(r"^\s*\[" + r"\.".join(parts) + r"\]\s*(#.*)?$")


def _find_table_line(path: str, table: str) -> int | None:
    pat = _header_re(table) if "." in table else re.compile(rf"^\s*\[\s*{re.escape(table)}\s*[.\]]")
    for i, line in enumerate(_lines(path), 1):
        if pat.match(line):
            return i
    return None


def _find_line(path: str, table: str | None, key: str) -> int | None:
    """Line of `key = ...` inside [table] (None: top level, before any header)."""
    lines = _lines(path)
    start = 0
    if table is not None:
        t = _find_table_line(path, table)
        if t is None:
            return None
        start = t
    key_re = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")
    for i in range(start, len(lines)):
        if lines[i].lstrip().startswith("["):  # next table header: the key is not there
            break
        if key_re.match(lines[i]):
            return i + 1
    return start or None


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []
