"""A fake, complete IndexTTS2 model_dir for tests: the five files IndexTTS2's webui requires (tiny
placeholder content) and a config.yaml with the keys of v2.0.0's checkpoints/config.yaml that the
stand-in and the replica read (values as in v2.0.0)."""
from __future__ import annotations

import os

REQUIRED = ("bpe.model", "gpt.pth", "config.yaml", "s2mel.pth", "wav2vec2bert_stats.pt")

CONFIG_YAML = """\
dataset:
  bpe_model: bpe.model
  sample_rate: 24000
gpt:
  model_dim: 1280
  max_mel_tokens: 1815
  max_text_tokens: 600
  heads: 20
  layers: 24
  number_text_tokens: 12000
  number_mel_codes: 8194
  start_mel_token: 8192
  stop_mel_token: 8193
semantic_codec:
  codebook_size: 8192
  hidden_size: 1024
s2mel:
  preprocess_params:
    sr: 22050
    spect_params: {n_fft: 1024, win_length: 1024, hop_length: 256, n_mels: 80, fmin: 0, fmax: "None"}
  DiT: {hidden_dim: 512, num_heads: 8, depth: 13, in_channels: 80, content_dim: 512}
  wavenet: {hidden_dim: 512, num_layers: 8, kernel_size: 5}
  length_regulator: {channels: 512, in_channels: 1024}
  style_encoder: {dim: 192}
gpt_checkpoint: gpt.pth
w2v_stat: wav2vec2bert_stats.pt
s2mel_checkpoint: s2mel.pth
emo_matrix: feat2.pt
spk_matrix: feat1.pt
emo_num: [3, 17, 2, 8, 4, 5, 10, 24]
qwen_emo_path: qwen0.6bemo4-merge/
vocoder: {type: bigvgan, name: nvidia/bigvgan_v2_22khz_80band_256x}
version: 2.0
"""


def make_model_dir(path: str, skip: tuple[str, ...] = ()) -> str:
    """Create the files in `path` (all but those in `skip`); returns path."""
    os.makedirs(path, exist_ok=True)
    for name in REQUIRED:
        if name in skip:
            continue
        with open(os.path.join(path, name), "w", encoding="utf-8") as f:
            f.write(CONFIG_YAML if name == "config.yaml" else "placeholder, not a checkpoint\n")
    return path
