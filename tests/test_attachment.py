"""Attachment zip contents, validation, and the request-id lookup guard."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from breakdown_samples import contended, schedstat
from tracing import attachment as A
from tracing.findings import findings
from tracing.ids import REQUEST_ID_RE, check_request_id, is_request_id, new_request_id
from tracing.report import render_report

# The shape of a real instance `trace` file (header, sched_waking, atrace markers).
RAW = """# tracer: nop
#
# entries-in-buffer/entries-written: 4/4   #P:2
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
         python3-4242    [000] d..2.  1000.000100: tracing_mark_write: B|4242|text
         python3-4242    [000] d..4.  1000.000200: sched_waking: comm=worker-1 pid=4243 prio=120 target_cpu=001
         python3-4242    [000] d..2.  1000.200000: tracing_mark_write: E|4242
  noisyneighbour-777     [000] d..2.  1000.300000: sched_switch: prev_comm=noisyneighbour prev_pid=777 prev_prio=120 prev_state=R ==> next_comm=python3 next_pid=4242 next_prio=120
"""

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _summary(bd):
    return {"request_id": "20250101T120000-0badf00d", "engine": "builtin", "preset": {"preset": "default"},
            "breakdown": bd, "findings": findings(bd), "request": {"text": "你好 hello"},
            "versions": {"python": "3.11"}, "nan": float("nan")}


def test_build_and_validate(tmp_path):
    bd = contended()
    dest = tmp_path / "clips" / "x" / "trace.zip"
    p = A.build_attachment(dest, RAW, _summary(bd), render_report(bd, findings(bd), {}), PNG)
    assert p == dest and dest.is_file()
    assert not [f for f in os.listdir(dest.parent) if f.startswith(".attach-")]  # no temp left behind
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == ["report.txt", "summary.json", "timeline.png", "trace.txt"]
        assert zf.read("trace.txt").decode() == RAW  # exactly as read
        doc = json.loads(zf.read("summary.json"))
        assert doc["schema"] == A.SUMMARY_SCHEMA
        assert doc["breakdown"]["blockers"][0]["comm"] == "noisyneighbour"
        assert doc["findings"][0]["kind"] == "cpu_contention"
        assert doc["request"]["text"] == "你好 hello"
        assert doc["nan"] is None  # NaN is not JSON
        assert "noisyneighbour" in zf.read("report.txt").decode()
        assert zf.read("timeline.png") == PNG
    v = A.validate_attachment(dest)
    assert v["ok"], v["problems"]
    assert v["mode"] == "full" and v["schema"] == A.SUMMARY_SCHEMA
    assert set(v["members"]) == {"trace.txt", "summary.json", "report.txt", "timeline.png"}


def test_schedstat_attachment_has_no_trace(tmp_path):
    bd = schedstat()
    dest = A.build_attachment(tmp_path / "a.zip", None, _summary(bd), "r", None)
    v = A.validate_attachment(dest)
    assert v["ok"], v["problems"]
    assert set(v["members"]) == {"summary.json", "report.txt"}


@pytest.mark.parametrize("raw,problem", [
    (RAW.replace("# tracer: nop\n", ""), "# tracer:"),
    (RAW.replace("sched_waking", "sched_wakeup"), "sched_waking"),
    (RAW.replace("B|4242|text", "hello"), "B|"),
])
def test_validate_catches_bad_trace(tmp_path, raw, problem):
    dest = A.build_attachment(tmp_path / "a.zip", raw, _summary(contended()), "r", None)
    v = A.validate_attachment(dest)
    assert not v["ok"] and any(problem in p for p in v["problems"])


def test_validate_catches_missing_trace_and_garbage(tmp_path):
    v = A.validate_attachment(A.build_attachment(tmp_path / "a.zip", None, _summary(contended()), "r", None))
    assert not v["ok"] and "trace.txt missing" in v["problems"][0]
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert not A.validate_attachment(junk)["ok"]
    assert not A.validate_attachment(tmp_path / "absent.zip")["ok"]
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("summary.json", json.dumps({"schema": 1}))
        zf.writestr("report.txt", "")
        zf.writestr("../../etc/passwd", "x")
        zf.writestr("timeline.png", "GIF89a")
    v = A.validate_attachment(tmp_path / "evil.zip")
    assert any("unexpected" in p for p in v["problems"]) and any("not a PNG" in p for p in v["problems"])


def test_request_ids():
    rid = new_request_id()
    assert REQUEST_ID_RE.fullmatch(rid) and is_request_id(rid)
    assert new_request_id(0).startswith("19700101T000000-")
    assert len({new_request_id() for _ in range(200)}) == 200
    assert check_request_id(rid) == rid


GOOD = "20250101T120000-0badf00d"
BAD = ["", "../" + GOOD, GOOD + "/../x", "/etc/passwd", "/" + GOOD, GOOD + "\n", GOOD + "\x00", "\x00" + GOOD,
       GOOD.upper(), GOOD + "0" * 300, "..", ".", "20250101T120000-0badf00", "20250101T120000_0badf00d",
       " " + GOOD, None, 20250101, b"20250101T120000-0badf00d", GOOD.replace("-", "/")]


@pytest.mark.parametrize("bad", BAD, ids=[repr(b)[:30] for b in BAD])
def test_request_id_check_refuses(bad):
    with pytest.raises(ValueError):
        check_request_id(bad)
