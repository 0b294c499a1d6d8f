"""Bad-input limits, in one place. The service (models.base validation, models.audio_io), the
web UI (upload size, snapshot form) and the snapshot runner read them from here, and the "Limits"
table of docs/flags-and-engines.md lists them. Each limit is refused with a sentence naming it, never truncated.

Why these numbers: IndexTTS2 reads a few seconds of prompt audio and a sentence of text; the
limits leave room for real use while bounding what one request can cost in CPU, RAM and disk.
"""
from __future__ import annotations

# -- text ---------------------------------------------------------------------------------------
MAX_TEXT_CHARS = 2000  # synthesis text per request
MAX_EMO_TEXT_CHARS = 500  # emotion description (IndexTTS2 feeds it to Qwen as one short prompt)

# -- prompt audio (speaker / emotion reference), checked from the header BEFORE decoding --------
MAX_PROMPT_S = 60.0  # duration
MIN_AUDIO_RATE_HZ = 4_000  # below this nothing intelligible is left (and resampling up explodes)
MAX_AUDIO_RATE_HZ = 192_000  # the highest rate studio gear records at
MAX_AUDIO_CHANNELS = 8  # 7.1 surround
# decoded size = channels x sample rate x duration, in samples (float32 while decoding): one
# minute of 48 kHz stereo is 5.76 M; 8 M samples is 32 MB decoded
MAX_DECODED_SAMPLES = 8_000_000

# -- uploads (Gradio's max_file_size: refused before the body is stored) ------------------------
MAX_UPLOAD_MB = 20  # a minute of 96 kHz 24-bit stereo WAV is 34.6 MB, of 48 kHz 16-bit stereo 11.5 MB

# -- pressure snapshots (web UI and the run-against-a-service path) -----------------------------
MAX_SNAPSHOT_N = 50  # requests per preset
MAX_SNAPSHOT_REQUESTS = 200  # presets x N, after repeated preset names are folded
MAX_SNAPSHOTS_KEPT = 20  # snapshots kept under <outputs>/snapshots (oldest removed first)

# -- the request queue (Gradio's queue max_size; one synthesis runs at a time) ------------------
MAX_QUEUED = 16  # beyond this a request is refused at once ("queue is full") instead of waiting
#                  minutes: under 50 clients the p50 latency was 32 s with no limit
