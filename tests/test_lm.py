"""The word n-gram LM: hand-computed Kneser-Ney values, normalization, ARPA files, KenLM agreement."""

import math
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctclab.decoding.lm import ARPAFormatError, NGramLM, modified_kneser_ney_discounts

TOY = ["a b a", "b a"]  # <s> a b a </s>, <s> b a </s>
WORDS = ["go", "left", "right", "stop", "two", "ten"]


def predicted_words(model: NGramLM) -> list[str]:
    return sorted(word for word in model.vocabulary if word != "<s>")


def test_toy_bigram_by_hand():
    """Order 2 on TOY, every number worked out on paper.

    Unigram continuation counts: a 2 (after <s>, b), b 2 (after a, <s>), </s> 1 (after a); counts
    of counts t1=1, t2=2 -> Y=1/5, D1=1-2Y*2/1=1/5, D2=2 (t3=0), D3+ falls back to Y=1/5;
    S=5, gamma=(1/5*1 + 2*2)/5 = 21/25; uniform over {</s>, <unk>, a, b}.
    Bigrams (raw): (<s>,a)1 (a,b)1 (b,a)2 (a,</s>)2 (<s>,b)1: t1=3, t2=2 -> Y=3/7,
    D1=1-2Y*2/3=3/7, D2=2; context a: S=3, gamma(a)=(3/7 + 2)/3 = 17/21.
    """
    model = NGramLM.train(TOY, order=2)
    unigram = {
        "a": Fraction(21, 100),
        "b": Fraction(21, 100),
        "<unk>": Fraction(21, 100),
        "</s>": Fraction(4, 25) + Fraction(21, 100),
    }
    for word, expected in unigram.items():
        assert 10 ** model.log10_prob(word) == pytest.approx(float(expected), abs=1e-12)
    gamma_a = Fraction(17, 21)
    expected_after_a = {
        "b": Fraction(4, 7) / 3 + gamma_a * unigram["b"],  # seen once: (1 - D1) / 3 + backoff
        "</s>": 0 + gamma_a * unigram["</s>"],  # seen twice: D2 = 2 removes all of it
        "a": gamma_a * unigram["a"],  # unseen: backoff weight times the unigram
        "<unk>": gamma_a * unigram["<unk>"],
    }
    for word, expected in expected_after_a.items():
        assert 10 ** model.log10_prob(word, ("a",)) == pytest.approx(float(expected), abs=1e-12)
    assert model.log10_backoffs[("a",)] == pytest.approx(math.log10(17 / 21))
    assert model.counts() == [5, 5]  # 5 unigrams (</s> <s> <unk> a b), 5 distinct bigrams


@pytest.mark.parametrize(
    "count_of_counts, expected",
    [
        ({1: 10, 2: 5, 3: 3, 4: 2}, (1 - 2 * 0.5 * 5 / 10, 2 - 3 * 0.5 * 3 / 5, 3 - 4 * 0.5 * 2 / 3)),  # Y = 1/2
        ({1: 3, 2: 2}, (3 / 7, 2.0, 3 / 7)),  # t3 = 0: D3+ falls back to Y
        ({}, (0.5, 0.5, 0.5)),  # nothing counted: the documented 0.5
    ],
)
def test_discounts(count_of_counts, expected):
    assert modified_kneser_ney_discounts(count_of_counts) == pytest.approx(expected)


sentences = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join), min_size=1, max_size=12)
contexts = st.lists(st.sampled_from(WORDS + ["<s>", "never_seen"]), max_size=4).map(tuple)


@settings(max_examples=60, deadline=None)
@given(texts=sentences, order=st.integers(1, 4), context=contexts)
def test_next_word_probabilities_sum_to_one(texts, order, context):
    model = NGramLM.train(texts, order)
    total = sum(10 ** model.log10_prob(word, context) for word in predicted_words(model))
    assert total == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(texts=sentences, order=st.integers(1, 4))
def test_arpa_round_trip(tmp_path_factory, texts, order):
    model = NGramLM.train(texts, order)
    path = model.save_arpa(tmp_path_factory.mktemp("arpa") / "model.arpa")
    loaded = NGramLM.load_arpa(path)
    assert loaded.order == order and loaded.counts() == model.counts() and loaded.vocabulary == model.vocabulary
    rng = np.random.default_rng(len(texts))
    for _ in range(20):
        context = tuple(rng.choice(WORDS + ["<s>"], size=rng.integers(0, order)))
        for word in predicted_words(model) + ["never_seen"]:
            assert loaded.log10_prob(word, context) == pytest.approx(model.log10_prob(word, context), abs=2e-7)
    for text in texts:
        assert loaded.score_sentence(text) == pytest.approx(model.score_sentence(text), abs=1e-6)


def test_arpa_header_counts_match_sections(tmp_path):
    model = NGramLM.train(["go left two", "go right ten", "stop", "go left"], order=3)
    text = model.save_arpa(tmp_path / "lm.arpa").read_text()
    header = {int(n): int(count) for n, count in re.findall(r"^ngram (\d+)=(\d+)$", text, re.MULTILINE)}
    sections = re.split(r"^\\(\d)-grams:$", text, flags=re.MULTILINE)
    for n, body in zip(sections[1::2], sections[2::2]):
        lines = [line for line in body.split("\\end\\")[0].splitlines() if line.strip()]
        assert len(lines) == header[int(n)]
        fields = 3 if int(n) < 3 else 2  # log10 prob, n-gram, backoff (none for the highest order)
        assert all(len(line.split("\t")) == fields for line in lines)
    assert header == {1: 9, 2: 10, 3: 8} == dict(enumerate(model.counts(), start=1))
    assert text.lstrip().startswith("\\data\\") and text.rstrip().endswith("\\end\\")
    assert re.search(r"^-99\.0+\t<s>\t", text, re.MULTILINE)  # never predicted


def test_unknown_words_score_as_unk():
    model = NGramLM.train(["go left", "go right"], order=2)
    assert model.log10_prob("sideways", ("go",)) == model.log10_prob("<unk>", ("go",))
    assert model.log10_prob("left", ("sideways",)) == model.log10_prob("left", ("<unk>",))
    by_word = [
        model.log10_prob("go", ("<s>",)),
        model.log10_prob("left", ("<s>", "go")),
        model.log10_prob("</s>", ("go", "left")),
    ]
    assert model.score_sentence("go left") == pytest.approx(sum(by_word))


def test_kenlm_reads_our_arpa_and_agrees(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    texts = ["go left two", "go right ten", "stop", "go left", "two ten go", "left left right"]
    model = NGramLM.train(texts * 3, order=3)
    reference = kenlm.Model(str(model.save_arpa(tmp_path / "lm.arpa")))
    assert reference.order == 3
    for text in texts + ["ten two", "go sideways now", "stop stop stop"]:
        assert reference.score(text, bos=True, eos=True) == pytest.approx(model.score_sentence(text), abs=1e-4)
        assert reference.score(text, bos=False, eos=False) == pytest.approx(
            model.score_sentence(text, bos=False, eos=False), abs=1e-4
        )


@pytest.mark.parametrize(
    "content, message",
    [
        ("\\1-grams:\n-1.0\ta\n\\end\\\n", "no \\\\data\\\\ header"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t<unk>\n\\end\\\n", "header says ngram 1=2 but the file has 1"),
        ("\\data\\\nngram 1=1\n\n\\1-grams:\nhalf\t<unk>\n\\end\\\n", r"lm.arpa:5: bad number"),
        ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\t<unk>\textra\tfields\n\\end\\\n", r"lm.arpa:5: a 1-gram line needs"),
        ("\\data\\\nngram one=1\n", r"lm.arpa:2: expected 'ngram N=COUNT'"),
    ],
)
def test_bad_arpa_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "lm.arpa"
    path.write_text(content)
    with pytest.raises(ARPAFormatError, match=message):
        NGramLM.load_arpa(path)


def test_bad_training_input():
    with pytest.raises(ValueError, match="order must be at least 1, got 0"):
        NGramLM.train(["go"], order=0)
    with pytest.raises(ValueError, match="every text is empty"):
        NGramLM.train(["", "  "])
    with pytest.raises(ARPAFormatError, match="does not exist"):
        NGramLM.load_arpa("no/such/file.arpa")
