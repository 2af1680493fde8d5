"""decode_eval: posteriors of a trained run, LM weight tuning, the decoder table, run selection."""

import json
import math

import numpy as np
import pytest

from ctclab.alphabet import ENGLISH
from ctclab.data.generator import AudioGenerator
from ctclab.decoding.beam import prefix_beam_search
from ctclab.decoding.greedy import greedy_decode
from ctclab.decoding.lm import NGramLM
from ctclab.decoding.metrics import cer, wer
from ctclab.decoding.pyctc import PyctcdecodeNGram, pyctcdecode_labels
from ctclab.decoding.tuning import (
    decode_all,
    decoder_table,
    find_decoding_run,
    lm_fixes,
    run_probabilities,
    save_decoder_scores,
    score_splits,
    synthetic_posteriors,
    tune_lm_weights,
)
from ctclab.models.course import cnn_rnn_model
from ctclab.profiles import get_profile
from ctclab.runs import load_trained_model
from ctclab.training.evaluation import evaluate_model
from ctclab.training.trainer import train_model

TEXTS = [
    "turn left at the second corner",
    "seven of hearts",
    "march twenty third",
    "ten past nine",
    "queen of spades",
    "turn right at the first corner",
    "two of clubs",
    "march third",
]


@pytest.mark.parametrize("text", TEXTS[:4] + ["it's a dog's life", "aa  bb"])
def test_synthetic_posteriors_without_confusions_decode_to_the_text(text):
    probabilities = synthetic_posteriors(text, seed=3, confusion_rate=0.0)
    assert probabilities.shape[1] == ENGLISH.output_dim and probabilities.dtype == np.float32
    assert probabilities.sum(axis=1) == pytest.approx(np.ones(len(probabilities)), abs=1e-5)
    assert greedy_decode(probabilities) == text
    np.testing.assert_array_equal(probabilities, synthetic_posteriors(text, seed=3, confusion_rate=0.0))


def confused_set(seed: int = 0):
    probabilities = [synthetic_posteriors(text, seed=seed + i, confusion_rate=0.3) for i, text in enumerate(TEXTS)]
    return probabilities, NGramLM.train(TEXTS * 2, order=3)


def test_decoder_table_rows_and_lm_gain():
    probabilities, lm = confused_set()
    table = decoder_table(probabilities, TEXTS, lm, alpha=1.0, beta=1.0, beam_width=32)
    assert list(table.index) == ["greedy", "beam", "beam+LM"]
    assert list(table.columns) == ["WER", "CER", "utterances/s"]
    hypotheses = table.attrs["hypotheses"]
    assert hypotheses["greedy"] == [greedy_decode(p) for p in probabilities]
    for decoder in table.index:  # the table's numbers are the rates of its own transcripts
        assert table.loc[decoder, "WER"] == pytest.approx(wer(TEXTS, hypotheses[decoder]))
        assert table.loc[decoder, "CER"] == pytest.approx(cer(TEXTS, hypotheses[decoder]))
    # an LM that knows these sentences repairs the confused letters the acoustic search keeps
    assert table.loc["greedy", "WER"] > 0.2
    assert table.loc["beam+LM", "WER"] < table.loc["beam", "WER"] / 2


def test_save_decoder_scores_merges_the_table_into_scores_json(tmp_path):
    probabilities, lm = confused_set(seed=5)
    table = decoder_table(probabilities, TEXTS, lm, alpha=1.0, beta=1.0, beam_width=8)
    (tmp_path / "scores.json").write_text(json.dumps({"wer": 9.0, "parameters": 123}))  # as compare_models wrote it
    save_decoder_scores(tmp_path, table, TEXTS, alpha=1.0, beta=1.0, examples=2)
    scores = json.loads((tmp_path / "scores.json").read_text())
    fused = table.attrs["hypotheses"]["beam+LM"]
    assert scores["parameters"] == 123 and scores["utterances"] == len(TEXTS)
    assert scores["wer"] == pytest.approx(wer(TEXTS, table.attrs["hypotheses"]["greedy"]))
    assert scores["cer_beam"] == pytest.approx(cer(TEXTS, table.attrs["hypotheses"]["beam"]))
    assert (scores["wer_lm"], scores["cer_lm"]) == pytest.approx((wer(TEXTS, fused), cer(TEXTS, fused)))
    assert scores["examples"] == [
        {"truth": TEXTS[i], "prediction": table.attrs["hypotheses"]["greedy"][i], "beam+LM": fused[i]} for i in range(2)
    ]


def test_tune_lm_weights_grid():
    probabilities, lm = confused_set(seed=20)
    alpha, beta, grid = tune_lm_weights(probabilities, TEXTS, lm, [0.0, 1.0], [0.0, 2.0], beam_width=8, unk_offset=0.0)
    assert len(grid) == 4 and set(zip(grid.alpha, grid.beta)) == {(0.0, 0.0), (0.0, 2.0), (1.0, 0.0), (1.0, 2.0)}
    assert grid.WER.is_monotonic_increasing and (alpha, beta) == (grid.alpha[0], grid.beta[0])
    without_lm = [prefix_beam_search(p, beam_width=8) for p in probabilities]
    row = grid[(grid.alpha == 0.0) & (grid.beta == 0.0)].iloc[0]  # alpha = beta = 0: the LM has no say
    assert row.WER == pytest.approx(wer(TEXTS, without_lm))


def test_lm_fixes_lists_only_improvements():
    fixes = lm_fixes(["a b c", "d e", "f g"], ["a x c", "d e", "y z"], ["a b c", "d x", "f z"])
    assert fixes.to_dict("records") == [
        {"truth": "a b c", "before": "a x c", "after": "a b c", "words fixed": 1},
        {"truth": "f g", "before": "y z", "after": "f z", "words fixed": 1},
    ]
    with pytest.raises(ValueError, match="needs a language model"):
        decode_all([np.eye(ENGLISH.output_dim)], "beam+LM")
    with pytest.raises(ValueError, match="decoder must be one of"):
        decode_all([np.eye(ENGLISH.output_dim)], "viterbi")


def test_pyctcdecode_adapter_scores_like_our_search():
    lm = NGramLM.train(TEXTS, order=2)
    adapter = PyctcdecodeNGram(lm, alpha=0.7, beta=1.5)
    score, state = adapter.score(adapter.get_start_state(), "seven")
    assert state == ("seven",)
    assert score == pytest.approx(0.7 * math.log(10) * lm.log10_prob("seven", ("<s>",)) + 1.5)
    score, _ = adapter.score(state, "of", is_last_word=True)
    expected = lm.log10_prob("of", ("seven",)) + lm.log10_prob("</s>", ("of",))
    assert score == pytest.approx(0.7 * math.log(10) * expected + 1.5)
    score, _ = adapter.score(state, "", is_last_word=True)  # a trailing space: only the sentence end
    assert score == pytest.approx(0.7 * math.log(10) * lm.log10_prob("</s>", ("seven",)))
    score, _ = adapter.score(state, "sevne")  # out of vocabulary: -10 on top of p(<unk>)
    assert score == pytest.approx(0.7 * math.log(10) * lm.log10_prob("<unk>", ("seven",)) + 1.5 - 10.0)
    assert adapter.score_partial_token("sev") == 0.0 and adapter.score_partial_token("svn") == -10.0
    assert pyctcdecode_labels() == list("' abcdefghijklmnopqrstuvwxyz") + [""]


def write_run(folder, val_losses):
    folder.mkdir(parents=True)
    for name in ("model.keras", "builder.json"):
        (folder / name).write_text("{}")
    (folder / "history.json").write_text(json.dumps({"loss": val_losses, "val_loss": val_losses}))


def test_find_decoding_run_prefers_final_then_lowest_validation_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    profile = get_profile("smoke")
    assert find_decoding_run(profile) == (None, f"no trained run under {tmp_path / 'results/smoke'}")
    write_run(tmp_path / "results/smoke/transformers/conformer", [30.0, 9.0])
    write_run(tmp_path / "results/smoke/course/model_1", [50.0, 20.0])
    write_run(tmp_path / "results/smoke/course/model_4", [40.0, 12.0, 15.0])
    run, reason = find_decoding_run(profile)
    assert run == tmp_path / "results/smoke/course/model_4"
    assert "course run with the lowest validation loss" in reason
    write_run(tmp_path / "results/smoke/deep/final", [60.0])
    run, reason = find_decoding_run(profile)
    assert run.name == "final" and "notebook 02's final speech model" in reason


@pytest.mark.slow
def test_run_probabilities_match_the_model_on_each_utterance(tone_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))  # feature cache under tmp
    model = cnn_rnn_model(161, filters=16, kernel_size=5, conv_stride=2, units=16, rnn_type="gru")
    train_model(
        model,
        "s.pickle",
        "s.keras",
        train_json=tone_corpus,
        valid_json=tone_corpus,
        minibatch_size=3,
        epochs=1,
        verbose=0,
        results_dir=tmp_path / "results",
    )
    run_dir = tmp_path / "results" / "s"
    probabilities, references = run_probabilities(run_dir, tone_corpus, batch_size=4)
    model, normalizer, features, _ = load_trained_model(run_dir)
    generator = AudioGenerator(tone_corpus, features=features, shuffle=False, normalizer=normalizer, verbose=False)
    assert references == generator.texts and len(probabilities) == 6
    for index, probability in enumerate(probabilities):
        feature = generator.normalized_feature(index)[None]  # (1, T, F): alone, no padding
        expected = np.asarray(model(feature))[0]
        assert probability.shape == (model.output_length(feature.shape[1]), ENGLISH.output_dim)
        np.testing.assert_allclose(probability, expected[: len(probability)], atol=1e-5)
    greedy = [greedy_decode(p) for p in probabilities]
    assert greedy == evaluate_model(run_dir, tone_corpus)["hypotheses"]
    # score_splits: each split decoded and saved as a condition of the run's scores
    half = tmp_path / "half_corpus.json"
    half.write_text("".join(tone_corpus.read_text().splitlines(keepends=True)[:3]))
    lm = NGramLM.train(references * 2, order=2)
    table, results = score_splits(run_dir, {"all": tone_corpus, "half": half}, lm, 0.5, 1.0, beam_width=4)
    assert table.loc[("all", "greedy"), "CER"] == pytest.approx(cer(references, greedy))
    assert table.loc[("half", "greedy"), "CER"] == pytest.approx(cer(references[:3], greedy[:3]))
    assert table.loc[("half", "beam+LM"), "utterances"] == 3 and results["half"][2] == references[:3]
    scores = json.loads((run_dir / "scores.json").read_text())
    assert [c["condition"] for c in scores["conditions"]] == ["all", "half"]
    assert scores["conditions"][1]["cer_lm"] == pytest.approx(table.loc[("half", "beam+LM"), "CER"])


def test_decoder_scores_per_test_split_give_one_report_row_each(tmp_path):
    """Three splits saved by condition: each its own entry and report row; the first stays the headline."""
    from ctclab.report import page

    run_dir = tmp_path / "deep" / "final"
    run_dir.mkdir(parents=True)
    (run_dir / "history.json").write_text(json.dumps({"loss": [2.0], "val_loss": [2.5], "epoch_seconds": [1.0]}))
    probabilities, lm = confused_set(seed=5)
    tables = {}
    for seed, condition in ((5, "unseen voices"), (6, "held-out engine"), (7, "noisy + reverberant")):
        noisy, _ = confused_set(seed=seed)
        tables[condition] = decoder_table(noisy, TEXTS, lm, alpha=1.0, beta=1.0, beam_width=8)
        save_decoder_scores(
            run_dir, tables[condition], TEXTS, 1.0, 1.0, condition=condition, desc_file=f"data/{seed}.json"
        )
    save_decoder_scores(run_dir, tables["held-out engine"], TEXTS, 1.0, 1.0, condition="held-out engine")  # again
    scores = json.loads((run_dir / "scores.json").read_text())
    assert [c["condition"] for c in scores["conditions"]] == ["unseen voices", "noisy + reverberant", "held-out engine"]
    headline = tables["unseen voices"].attrs["hypotheses"]
    assert scores["cer"] == pytest.approx(cer(TEXTS, headline["greedy"]))
    assert scores["cer_lm"] == pytest.approx(cer(TEXTS, headline["beam+LM"]))
    frame = page.results_frame(tmp_path).set_index("model")
    for condition, table in tables.items():
        row = frame.loc[f"final ({condition})"]
        assert row["CER beam+LM"] == pytest.approx(cer(TEXTS, table.attrs["hypotheses"]["beam+LM"]))
        assert row["WER greedy"] == pytest.approx(wer(TEXTS, table.attrs["hypotheses"]["greedy"]))
    assert frame.loc["final (unseen voices)", "test split"] == "5.json"
