"""The real server through gradio_client: synthesis, per-clip breakdown, and bad input."""
from __future__ import annotations

import io
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from tests.conftest import delivery_counts, our_instances


def synth(client, text, **kw):
    return client.predict(text=text, api_name="/synthesize", **kw)


def test_zh_synthesis_returns_plausible_wav_with_breakdown(client, server):
    text = "今天天气很好，我们去公园散步吧。"
    audio, rid, head, bd_rows, stage_rows, blk_rows, findings, timeline, attachment, bd = synth(client, text)
    data, sr = sf.read(audio)
    assert sr == 22050
    n_chars = sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
    assert 0.12 * n_chars <= len(data) / sr <= 0.8 * n_chars
    assert np.abs(data).max() > 0.05  # not silence
    assert bd["request_id"] == rid and bd["breakdown"]["mode"] in ("full", "schedstat")
    totals = bd["breakdown"]["totals"]
    assert totals["on_cpu_s"] > 0
    if bd["breakdown"]["mode"] == "full":  # the panel says what the analysis read, and the latency tracers
        assert bd["breakdown"]["source"] == "pages" and "decoded from the ring-buffer pages" in head
        assert "Kernel latency tracers:** irqs/preemption off: " in head
    assert Path(attachment).name.endswith(".zip")
    with zipfile.ZipFile(attachment) as z:
        assert {"trace.txt", "summary.json", "report.txt"} <= set(z.namelist())
    # saved under outputs/ with a unique id
    assert (server.outputs / "clips" / rid / "audio.wav").is_file()


def test_two_quick_requests_get_distinct_ids(client):
    ids = {synth(client, f"Hello number {i}.")[1] for i in range(2)}
    assert len(ids) == 2


SILENT = np.zeros(22050, dtype=np.int16)


def _wav(path: Path, data, sr=22050):
    sf.write(path, data, sr)
    return str(path)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "notaudio.wav").write_bytes(b"this is not a wav file at all\n" * 20)
    (d / "empty.wav").write_bytes(b"")
    _wav(d / "silent.wav", SILENT)
    sf.write(d / "zero.wav", np.zeros((0,), dtype=np.int16), 22050)
    return d


BAD_CASES = [
    ("empty text", dict(text="")),
    ("whitespace text", dict(text=" \n\t ")),
    ("text over the limit", dict(text="a" * 5000)),
    ("non-audio prompt", dict(text="hello", spk="notaudio.wav")),
    ("0-byte prompt", dict(text="hello", spk="empty.wav")),
    ("silent prompt", dict(text="hello", spk="silent.wav")),
    ("0-length prompt", dict(text="hello", spk="zero.wav")),
    ("emotion weight out of range", dict(text="hello", emo_weight=3.0)),
    ("negative emotion value", dict(text="hello", v1=-0.5)),
    ("unknown emotion mode", dict(text="hello", emo_mode="dance")),
    ("unknown preset", dict(text="hello", preset="turbo")),
]


@pytest.mark.parametrize("name,kw", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_a_clear_error_and_server_keeps_serving(client, server, bad_files, name, kw):
    kw = dict(kw)
    if "spk" in kw:
        kw["spk"] = handle_file(str(bad_files / kw["spk"]))
    text = kw.pop("text")
    with pytest.raises(AppError) as ei:
        synth(client, text, **kw)
    msg = str(ei.value)
    assert len(msg) > 10 and "Traceback" not in msg
    assert our_instances(server.proc.pid) == []
    assert server.proc.poll() is None


def test_server_still_serves_after_bad_inputs(client):
    audio = synth(client, "Still here.")[0]
    assert sf.info(audio).duration > 0.3


def test_streamed_synthesis_audio_first_then_breakdown_then_complete_clip(client, server):
    """submit() sees the audio (with its request id) before the breakdown, all for the same
    request, and the last update is what predict() returns: the complete clip."""
    job = client.submit(text="Streamed: the audio first. 先听到声音。", api_name="/synthesize")
    updates = list(job)
    final = job.result()
    first = updates[0]
    rid = first[1]
    assert rid and Path(first[0]).is_file() and sf.info(first[0]).frames > 1000
    assert first[9]["pending"] == "analysis" and not first[9]["breakdown"] and not first[3]["data"]
    assert first[7] is None and first[8] is None and "Analysing the kernel trace" in first[2]
    assert all(u[1] == rid for u in updates)  # one request throughout
    with_bd = [i for i, u in enumerate(updates) if u[9]["breakdown"]]
    assert with_bd and with_bd[0] > 0  # the breakdown comes in a later update than the audio
    assert final[1] == rid and "pending" not in final[9]
    assert final[9]["breakdown"]["totals"]["on_cpu_s"] > 0 and final[3]["data"]
    assert Path(final[8]).name.endswith(".zip") and final[7]
    assert (server.outputs / "clips" / rid / "record.json").is_file()


def test_post_processing_starts_when_the_client_has_fetched_the_audio(client, server):
    """gradio_client downloads the wav of the first update: that download, not a timeout, lets
    the analysis start (app/delivery.py); the breakdown update does not resend the audio."""
    before = delivery_counts(server)
    job = client.submit(text="The download starts the analysis. 下载之后再分析。", api_name="/synthesize")
    updates = list(job)
    after = delivery_counts(server)
    assert after["fetched"] == before["fetched"] + 1 and after["timeout"] == before["timeout"]
    middle = [u for u in updates if u[9].get("pending") == "attachment"]
    assert middle and not (isinstance(middle[0][0], str) and middle[0][0].endswith(".wav"))
    assert Path(job.result()[0]).is_file()  # the complete clip has its audio again (predict parity)


def test_a_client_that_never_fetches_the_audio_still_gets_its_breakdown(server):
    """download_files=False: nobody fetches the wav, the handler waits --audio-wait-s, then analyses."""
    from gradio_client import Client
    bare = Client(server.url, verbose=False, download_files=False)
    before = delivery_counts(server)
    final = bare.predict(text="Nobody downloads this one.", api_name="/synthesize")
    assert final[9]["breakdown"]["totals"]["on_cpu_s"] > 0 and "pending" not in final[9]
    after = delivery_counts(server)
    assert after["timeout"] == before["timeout"] + 1 and after["fetched"] == before["fetched"]


def test_streamed_untraced_clip_has_two_updates(client):
    job = client.submit(text="No trace, still streamed.", trace=False, api_name="/synthesize")
    updates = list(job)
    final = job.result()
    assert updates[0][0] and updates[0][9]["pending"] == "analysis" and updates[0][8] is None
    assert "Tracing was off" in updates[0][2] and "Analysing" not in updates[0][2]
    assert final[1] == updates[0][1] and final[8] and not final[9]["breakdown"]


FOUR_SEGMENTS = ("The first sentence is long enough to fill a segment on its own today. "
                 "The second sentence is also long enough to stand alone as a segment. "
                 "A third sentence follows here and it is as long as the other two. "
                 "The fourth and last sentence closes the text and ends the clip now.")


def test_stream_endpoint_hands_segments_to_the_client_as_they_are_made(client):
    """/synthesize_stream: one update per segment (its wav, playable on the client's disk) before
    the clip panel's steps, ending in the complete clip with its first-sound time; joined, the
    segments are the clip. (That the first reaches a client before the last segment is made is
    shown where a segment takes seconds: tests/real_indextts, the benchmark; the builtin engine
    here makes these four in well under the time a busy host takes to deliver one update.)"""
    from tests.stream_client import stream
    res = stream(client, {"text": FOUR_SEGMENTS, "max_tokens_seg": 20})
    final = res["final"]
    segs = final["segment_s"]
    assert len(res["segments"]) == len(segs) == 4
    assert final["first_sound_s"] == segs[0] and "pending" not in final
    fs = final["breakdown"]["first_sound"]
    assert fs["before"]["wall_s"] < final["breakdown"]["window"]["duration_s"]
    pieces = [sf.read(p, dtype="int16")[0] for p in res["segments"]]
    clip, sr = sf.read(res["clip"], dtype="int16")
    assert sr == 22050 and np.array_equal(np.concatenate(pieces), clip)  # the pieces are the clip
    assert res["segment_at_s"] == sorted(res["segment_at_s"])
    assert res["first_s"] < res["audio_s"] <= res["complete_s"]


def test_plain_synthesize_is_unchanged_by_streaming(client):
    """/synthesize (the complete-clip endpoint) still yields no segment: its first update is the
    clip's audio, and it has the panel's ten outputs."""
    job = client.submit(text=FOUR_SEGMENTS, max_tokens_seg=20, api_name="/synthesize")
    updates = list(job)
    assert len(updates[0]) == 10 and updates[0][0].endswith("audio.wav")
    assert len(job.result()[9]["segment_s"]) == 4
