"""Shrunk random weights for the real IndexTTS code (v2 / 2.5), generated at test time.

Run with the interpreter of an environment that has IndexTTS installed (the test builds one from
upstream's uv.lock, see envs.py):

    <env>/bin/python tests/real_indextts/make_weights.py --version 2 --out DIR

Every file is built by instantiating upstream's OWN classes from the installed package with a
config.yaml whose sizes are small, then saving their randomly initialised state: so the shapes
match what upstream's constructors load (gpt.pth strictly, s2mel.pth by shape) by construction,
not by a copy of upstream's layer tables. What upstream hard-codes is kept:
w2v-BERT hidden size 1024 with 17 layers (`hidden_states[17]` is read), GPT model_dim 1280 (the
s2mel `gpt_layer` is Linear(1280, ...)), 80 mel bins, CAMPPlus embedding 192, 22050 Hz /
hop 256 BigVGAN. The hub models are written in the offline Hugging Face cache layout
(models--org--name/snapshots/<rev>/, refs/main) under DIR/hf_cache, which the adapter points
HF_HUB_CACHE at; the test runs with HF_HUB_OFFLINE=1 so nothing is ever downloaded.
Weights are saved in float16 where upstream loads them with load_state_dict (half the disk).
Random weights never emit the stop token: requests must pass a small max_mel_tokens.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REV = "0" * 40  # snapshot revision name in the offline cache (any 40-hex string works)

# Sizes: small where upstream reads them from config.yaml, upstream's values where it hard-codes.
W2V_HIDDEN, W2V_LAYERS = 1024, 17
GPT_DIM = 1280
BPE_VOCAB = 160
EMO_NUM = [1, 1, 1, 1, 1, 1, 1, 1]  # rows per emotion in feat1/feat2 (upstream: [3, 17, ...])


def shrunk_config_v2() -> dict:
    """config.yaml for v2: upstream's keys, small sizes (values upstream hard-codes kept)."""
    return {
        "dataset": {"bpe_model": "bpe.model", "sample_rate": 24000, "squeeze": False,
                    "mel": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "win_length": 1024,
                            "n_mels": 100, "mel_fmin": 0, "normalize": False}},
        "gpt": {"model_dim": GPT_DIM, "max_mel_tokens": 250, "max_text_tokens": 200, "heads": 4,
                "use_mel_codes_as_input": True, "mel_length_compression": 1024, "layers": 1,
                "number_text_tokens": 256, "number_mel_codes": 8194, "start_mel_token": 8192,
                "stop_mel_token": 8193, "start_text_token": 0, "stop_text_token": 1,
                "train_solo_embeddings": False, "condition_type": "conformer_perceiver",
                "condition_module": {"output_size": 64, "linear_units": 64, "attention_heads": 2,
                                     "num_blocks": 1, "input_layer": "conv2d2", "perceiver_mult": 1},
                "emo_condition_module": {"output_size": 64, "linear_units": 64, "attention_heads": 2,
                                         "num_blocks": 1, "input_layer": "conv2d2", "perceiver_mult": 1}},
        "semantic_codec": {"codebook_size": 8192, "hidden_size": W2V_HIDDEN, "codebook_dim": 8,
                           "vocos_dim": 32, "vocos_intermediate_dim": 64, "vocos_num_layers": 1},
        "s2mel": {
            "preprocess_params": {"sr": 22050, "spect_params": {"n_fft": 1024, "win_length": 1024,
                                                                "hop_length": 256, "n_mels": 80,
                                                                "fmin": 0, "fmax": "None"}},
            "dit_type": "DiT", "reg_loss_type": "l1", "style_encoder": {"dim": 192},
            "length_regulator": {"channels": 64, "is_discrete": False, "in_channels": W2V_HIDDEN,
                                 "content_codebook_size": 2048, "sampling_ratios": [1, 1, 1, 1],
                                 "vector_quantize": False, "n_codebooks": 1, "quantizer_dropout": 0.0,
                                 "f0_condition": False, "n_f0_bins": 512},
            "DiT": {"hidden_dim": 64, "num_heads": 2, "depth": 1, "class_dropout_prob": 0.1,
                    "block_size": 8192, "in_channels": 80, "style_condition": True,
                    "final_layer_type": "wavenet", "target": "mel", "content_dim": 64,
                    "content_codebook_size": 1024, "content_type": "discrete", "f0_condition": False,
                    "n_f0_bins": 512, "content_codebooks": 1, "is_causal": False,
                    "long_skip_connection": True, "zero_prompt_speech_token": False,
                    "time_as_token": False, "style_as_token": False, "uvit_skip_connection": True,
                    "add_resblock_in_transformer": False},
            "wavenet": {"hidden_dim": 64, "num_layers": 1, "kernel_size": 5, "dilation_rate": 1,
                        "p_dropout": 0.2, "style_condition": True},
        },
        "gpt_checkpoint": "gpt.pth", "w2v_stat": "wav2vec2bert_stats.pt", "s2mel_checkpoint": "s2mel.pth",
        "emo_matrix": "feat2.pt", "spk_matrix": "feat1.pt", "emo_num": EMO_NUM,
        "qwen_emo_path": "qwen_emo_tiny/",
        "vocoder": {"type": "bigvgan", "name": "nvidia/bigvgan_v2_22khz_80band_256x"},
        "version": 2.0,
    }


# BigVGAN v2 22 kHz / 80 bands / 256x: the hyper-parameters its config.json carries, with a
# narrow first layer (6 upsamplings halve the channels: 64 leaves 1 at the end).
BIGVGAN_CONFIG = {
    "resblock": "1", "upsample_rates": [4, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4],
    "upsample_initial_channel": 64, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]],
    "use_tanh_at_final": False, "use_bias_at_final": False, "activation": "snakebeta",
    "snake_logscale": True, "num_mels": 80, "n_fft": 1024, "hop_size": 256, "win_size": 1024,
    "sampling_rate": 22050, "fmin": 0, "fmax": None, "fmax_for_loss": None,
}

CORPUS = [
    "Hello world. This is a test of the real IndexTTS code with random weights.",
    "The quick brown fox jumps over the lazy dog, again and again.",
    "你好，世界。今天天气很好，我们一起去公园散步吧。",
    "语音合成测试，一二三四五六七八九十。",
]


def hub_snapshot(cache: str, repo: str) -> str:
    """Create models--org--name/{refs/main, snapshots/REV} in `cache`; return the snapshot dir."""
    base = os.path.join(cache, "models--" + repo.replace("/", "--"))
    snap = os.path.join(base, "snapshots", REV)
    os.makedirs(snap, exist_ok=True)
    os.makedirs(os.path.join(base, "refs"), exist_ok=True)
    with open(os.path.join(base, "refs", "main"), "w") as f:
        f.write(REV)
    return snap


def half(sd: dict) -> dict:
    import torch
    return {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in sd.items()}


def make_bpe(path: str, workdir: str) -> None:
    """A small sentencepiece BPE model trained on a few sentences (upstream's is 12000 pieces)."""
    import sentencepiece as spm
    corpus = os.path.join(workdir, "bpe_corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for line in CORPUS * 4:
            f.write(line.upper() + "\n")
    prefix = os.path.join(workdir, "bpe")
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=BPE_VOCAB,
                                   model_type="bpe", character_coverage=1.0, minloglevel=2,
                                   hard_vocab_limit=False)
    os.replace(prefix + ".model", path)


def make_w2v_bert(cache: str) -> None:
    """facebook/w2v-bert-2.0: hidden 1024 and 17 layers kept, feed-forward and heads tiny."""
    import torch
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel
    snap = hub_snapshot(cache, "facebook/w2v-bert-2.0")
    SeamlessM4TFeatureExtractor().save_pretrained(snap)
    cfg = Wav2Vec2BertConfig(hidden_size=W2V_HIDDEN, num_hidden_layers=W2V_LAYERS, num_attention_heads=4,
                             intermediate_size=32, conv_depthwise_kernel_size=3, add_adapter=False)
    torch.manual_seed(0)
    model = Wav2Vec2BertModel(cfg).half()
    model.save_pretrained(snap, safe_serialization=True)


def make_maskgct_codec(cache: str, codec_cfg: dict, repcodec_cls) -> None:
    """amphion/MaskGCT semantic_codec/model.safetensors, built by upstream's RepCodec."""
    import safetensors.torch
    from omegaconf import OmegaConf
    snap = hub_snapshot(cache, "amphion/MaskGCT")
    os.makedirs(os.path.join(snap, "semantic_codec"), exist_ok=True)
    codec = repcodec_cls(cfg=OmegaConf.create(codec_cfg))
    safetensors.torch.save_model(codec, os.path.join(snap, "semantic_codec", "model.safetensors"))


def make_campplus(cache: str, campplus_cls) -> None:
    import torch
    snap = hub_snapshot(cache, "funasr/campplus")
    torch.save(half(campplus_cls(feat_dim=80, embedding_size=192).state_dict()),
               os.path.join(snap, "campplus_cn_common.bin"))


def make_bigvgan(cache: str, name: str, bigvgan_module) -> None:
    import torch
    snap = hub_snapshot(cache, name)
    with open(os.path.join(snap, "config.json"), "w") as f:
        json.dump(BIGVGAN_CONFIG, f, indent=1)
    from indextts.s2mel.modules.bigvgan.env import AttrDict
    h = AttrDict(BIGVGAN_CONFIG)
    model = bigvgan_module.BigVGAN(h, use_cuda_kernel=False)
    torch.save({"generator": half(model.state_dict())}, os.path.join(snap, "bigvgan_generator.pt"))


def make_qwen_emo(path: str) -> None:
    """The emotion-from-text model upstream always loads (QwenEmotion): a tiny Qwen3 with a
    word-level tokenizer carrying a chat template, random weights."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM
    os.makedirs(path, exist_ok=True)
    words = sorted({w for line in CORPUS for w in line.split()} | set("".join(CORPUS)))
    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<|endoftext|>": 3}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    fast.save_pretrained(path)
    cfg = Qwen3Config(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=512,
                      eos_token_id=2, pad_token_id=3, bos_token_id=1, tie_word_embeddings=True)
    torch.manual_seed(0)
    Qwen3ForCausalLM(cfg).save_pretrained(path, safe_serialization=True)


def make_v2(out: str) -> None:
    import torch
    import yaml
    from omegaconf import OmegaConf
    from indextts.gpt.model_v2 import UnifiedVoice
    from indextts.s2mel.modules.commons import MyModel
    from indextts.s2mel.modules.campplus.DTDNN import CAMPPlus
    from indextts.s2mel.modules.bigvgan import bigvgan
    from indextts.utils.maskgct.models.codec.kmeans.repcodec_model import RepCodec

    cfg = shrunk_config_v2()
    cache = os.path.join(out, "hf_cache")
    with open(os.path.join(out, "config.yaml"), "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    ocfg = OmegaConf.create(cfg)
    torch.manual_seed(0)
    gpt = UnifiedVoice(**ocfg.gpt)
    torch.save(half(gpt.state_dict()), os.path.join(out, cfg["gpt_checkpoint"]))
    s2mel = MyModel(ocfg.s2mel, use_gpt_latent=True)
    torch.save({"net": {k: half(m.state_dict()) for k, m in s2mel.models.items()}},
               os.path.join(out, cfg["s2mel_checkpoint"]))
    rows = sum(EMO_NUM)
    torch.save(torch.randn(rows, 192), os.path.join(out, cfg["spk_matrix"]))
    torch.save(torch.randn(rows, GPT_DIM) * 0.02, os.path.join(out, cfg["emo_matrix"]))
    torch.save({"mean": torch.zeros(W2V_HIDDEN), "var": torch.ones(W2V_HIDDEN)},
               os.path.join(out, cfg["w2v_stat"]))
    make_bpe(os.path.join(out, cfg["dataset"]["bpe_model"]), out)
    make_qwen_emo(os.path.join(out, cfg["qwen_emo_path"]))
    make_w2v_bert(cache)
    make_maskgct_codec(cache, cfg["semantic_codec"], RepCodec)
    make_campplus(cache, CAMPPlus)
    make_bigvgan(cache, cfg["vocoder"]["name"], bigvgan)


def shrunk_config_v25() -> dict:
    """config.yaml for IndexTTS-2.5 (as read by indextts25-inference 0.2.0's classes): no GPT
    latent pass, so model_dim is free; speaker conditioning is CAMPPlus (192) projected.
    number_text_tokens is set from the tiktoken vocabulary once it is written."""
    cfg = shrunk_config_v2()
    cfg["gpt"] = {"model_dim": 64, "max_mel_tokens": 250, "max_text_tokens": 200, "heads": 2, "layers": 1,
                  "number_text_tokens": 0, "number_mel_codes": 8194, "start_mel_token": 8192,
                  "stop_mel_token": 8193, "start_text_token": 0, "stop_text_token": 1,
                  "emo_condition_module": {"output_size": 64, "linear_units": 64, "attention_heads": 2,
                                           "num_blocks": 1, "input_layer": "conv2d2", "perceiver_mult": 1}}
    cfg["semantic_codec"] = {"codebook_size": 8192, "hidden_size": W2V_HIDDEN, "codebook_dim": 8,
                             "vocos_dim": 32, "vocos_intermediate_dim": 64, "vocos_num_layers": 1}
    cfg.pop("qwen_emo_path")  # 2.5 loads QwenEmotion only with use_qwen_emo (indextts25: never)
    cfg["version"] = 2.5
    return cfg


TIKTOKEN_NAME = "multilingual_zh_ja_yue_char_del"  # the encoding name 2.5 asks for


def make_tiktoken(path: str) -> None:
    """A byte-level tiktoken vocabulary: the 256 single bytes, no merges (upstream's has ~50k)."""
    import base64
    with open(path, "w") as f:
        for b in range(256):
            f.write(f"{base64.b64encode(bytes([b])).decode()} {b}\n")


def make_v25(out: str) -> None:
    """IndexTTS-2.5 model_dir in the layout its loader reads: codec.pth, the .tiktoken file and
    plain directories under hf_cache/ (w2v-bert-2.0/, bigvgan/, campplus_cn_common.bin)."""
    import torch
    import yaml
    from omegaconf import OmegaConf
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel
    from indextts25.codec.models import EnhancedCodec
    from indextts25.gpt.model_v2 import UnifiedVoice
    from indextts25.s2mel.modules.commons import MyModel
    from indextts25.s2mel.modules.campplus.DTDNN import CAMPPlus
    from indextts25.s2mel.modules.bigvgan.bigvgan import BigVGAN
    from indextts25.utils.tokenizer import get_encoding

    cfg = shrunk_config_v25()
    make_tiktoken(os.path.join(out, TIKTOKEN_NAME + ".tiktoken"))
    cfg["gpt"]["number_text_tokens"] = get_encoding(TIKTOKEN_NAME, model_dir=out).n_vocab
    with open(os.path.join(out, "config.yaml"), "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    ocfg = OmegaConf.create(cfg)
    torch.manual_seed(0)
    gpt = UnifiedVoice(**ocfg.gpt)
    torch.save(half(gpt.state_dict()), os.path.join(out, cfg["gpt_checkpoint"]))
    s2mel = MyModel(ocfg.s2mel)
    torch.save({"net": {k: half(m.state_dict()) for k, m in s2mel.models.items()}},
               os.path.join(out, cfg["s2mel_checkpoint"]))
    torch.save({"model": half(EnhancedCodec(**cfg["semantic_codec"]).state_dict())},
               os.path.join(out, "codec.pth"))
    rows = sum(EMO_NUM)
    torch.save(torch.randn(rows, 192), os.path.join(out, cfg["spk_matrix"]))
    torch.save(torch.randn(rows, cfg["gpt"]["model_dim"]) * 0.02, os.path.join(out, cfg["emo_matrix"]))
    torch.save({"mean": torch.zeros(W2V_HIDDEN), "var": torch.ones(W2V_HIDDEN)},
               os.path.join(out, cfg["w2v_stat"]))
    hf = os.path.join(out, "hf_cache")
    w2v = os.path.join(hf, "w2v-bert-2.0")
    os.makedirs(w2v, exist_ok=True)
    SeamlessM4TFeatureExtractor().save_pretrained(w2v)
    wcfg = Wav2Vec2BertConfig(hidden_size=W2V_HIDDEN, num_hidden_layers=W2V_LAYERS, num_attention_heads=4,
                              intermediate_size=32, conv_depthwise_kernel_size=3, add_adapter=False)
    Wav2Vec2BertModel(wcfg).half().save_pretrained(w2v, safe_serialization=True)
    torch.save(half(CAMPPlus(feat_dim=80, embedding_size=192).state_dict()),
               os.path.join(hf, "campplus_cn_common.bin"))
    voc = os.path.join(hf, "bigvgan")
    os.makedirs(voc, exist_ok=True)
    with open(os.path.join(voc, "config.json"), "w") as f:
        json.dump(BIGVGAN_CONFIG, f, indent=1)
    from indextts25.s2mel.modules.bigvgan.bigvgan import load_hparams_from_json
    model = BigVGAN(load_hparams_from_json(os.path.join(voc, "config.json")))
    torch.save({"generator": half(model.state_dict())}, os.path.join(voc, "bigvgan_generator.pt"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", choices=("2", "2.5"), required=True)
    ap.add_argument("--out", required=True, help="model_dir to write (created)")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    t0 = time.monotonic()
    if a.version == "2":
        make_v2(a.out)
    else:
        make_v25(a.out)
    print(f"[make_weights] IndexTTS {a.version} model_dir {a.out} in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
