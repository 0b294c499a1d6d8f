"""Text front end: each step on its own, then the whole pipeline."""
import pytest

from models.text import (clean_text, count_tokens, expand_numbers, language_runs, normalize,
                         normalize_punctuation, number_to_words_en, number_to_zh, prepare, segment,
                         split_sentences)


def test_control_characters_removed_and_fullwidth_ascii():
    assert clean_text("Hello\x00 wor\u200bld\x07\n\tＡＢＣ１２３") == "Hello world ABC123"


def test_punctuation_full_width_after_cjk_only():
    assert normalize_punctuation("你好,世界!真的?") == "你好，世界！真的？"
    assert normalize_punctuation("Pi is 3.14, ok?") == "Pi is 3.14, ok?"
    assert normalize_punctuation("“你好”——他说......") == '"你好"，他说…'


@pytest.mark.parametrize("n,words", [(0, "zero"), (13, "thirteen"), (42, "forty-two"), (100, "one hundred"),
                                     (1234, "one thousand two hundred thirty-four"),
                                     (2_000_005, "two million five")])
def test_english_numbers(n, words):
    assert number_to_words_en(n) == words


@pytest.mark.parametrize("n,zh", [(0, "零"), (10, "十"), (12, "十二"), (105, "一百零五"), (1010, "一千零一十"),
                                  (10005, "一万零五"), (100000, "十万"), (200000001, "二亿零一")])
def test_chinese_numbers(n, zh):
    assert number_to_zh(n) == zh


def test_numbers_read_in_the_language_around_them():
    assert expand_numbers("今天是2024年5月3日，湿度80%，气温25.5度。") == \
        "今天是二零二四年五月三日，湿度百分之八十，气温二十五点五度。"
    assert expand_numbers("I have 1,234 apples and 3.5 pears.") == \
        "I have one thousand two hundred thirty-four apples and three point five pears."
    assert expand_numbers("我有3个 apples") == "我有三个 apples"


def test_language_runs_split_mixed_text():
    runs = language_runs("我喜欢用Python写代码，你呢？OK.")
    assert runs == [("zh", "我喜欢用"), ("en", "Python"), ("zh", "写代码，你呢？"), ("en", "OK.")]
    assert language_runs("...") == []


def test_token_count_definition():
    # zh: one per character; en: one per word; one per sentence/clause punctuation mark
    assert count_tokens("你好世界") == 4
    assert count_tokens("hello big world") == 3
    assert count_tokens("你好, world!") == 5


def test_sentences_keep_decimals_together():
    assert split_sentences("It is 3.5 m. Next one! 下一句。最后") == ["It is 3.5 m.", "Next one!", "下一句。", "最后"]


@pytest.mark.parametrize("max_tokens", [20, 40, 120])
def test_segmentation_honours_max_tokens(max_tokens):
    text = normalize("这是一个相当长的中文句子，用来测试分段功能是否正常工作。" * 8
                     + "And here is an English sentence with quite a few words in it. " * 6
                     + "没有标点的超长句子" * 12)
    segs = segment(text, max_tokens)
    assert all(count_tokens(s) <= max_tokens for s in segs)
    # nothing lost or duplicated
    assert sum(count_tokens(s) for s in segs) == count_tokens(text)
    if max_tokens == 120:
        assert len(segs) < len(segment(text, 20))


def test_short_sentences_are_packed():
    assert segment("一。二。三。", 120) == ["一。二。三。"]


def test_prepare_drops_unspeakable_segments():
    assert prepare("!!! 。。。 ……", 120) == []
    segs = prepare("Hello 世界。 !!!", 120)
    assert len(segs) == 1 and [lang for lang, _ in segs[0].runs] == ["en", "zh"]
