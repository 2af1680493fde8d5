"""The synthetic typing corpus: emg2qwerty layout through the unchanged loader, timing, spatial model, cache.

Expectations come from outside the model where one exists: the layout from the loader's docstring
and the dataset facts (2 kHz, 16 electrodes per wrist, <f4 / <f8 fields), the QWERTY rows written
out here, circular statistics for the band rotation, and key-press times for the bursts.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

from ctclab.emg import loaders as emg_loaders
from ctclab.emg import typing_corpus
from ctclab.emg import typing_synthesis as synthesis
from ctclab.emg.typing_corpus import TypingCorpusConfig
from ctclab.emg.typing_synthesis import LEFT, RIGHT, MyoConfig, TypingConfig

LAYOUT_DTYPE = np.dtype([("emg_left", "<f4", (16,)), ("emg_right", "<f4", (16,)), ("time", "<f8")])
TYPED_KEYS = set("abcdefghijklmnopqrstuvwxyz'") | {"Key.space", "Key.backspace"}
TINY = TypingCorpusConfig(
    num_users=2, sessions_per_user=2, prompts_per_session=2, max_words=4, typing=TypingConfig(typo_rate=0.2)
)
# no session jitter, contact spread, press-to-press strength or timing jitter: patterns are exact
STEADY = MyoConfig(session_rotation=0.0, contact_spread=0.0, amplitude_spread=0.0, burst_jitter=0.0, hum=(0.1, 0.1))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("CTCLAB_HOME", str(home))
        root = Path(typing_corpus.typing_corpus_dir("smoke"))
        return root, typing_corpus.build_typing_corpus(root, TINY)


def steady_typist(**changes: Any) -> synthesis.Typist:
    typist = synthesis.draw_typist("steady", np.random.default_rng(0), TypingConfig(), STEADY)
    return replace(typist, **{"rotation": (0.0, 0.0), **changes})


def presses(key: str, count: int = 16, every: float = 0.35) -> tuple[list[dict], int]:
    """``count`` presses of one key every ``every`` s from 0.4 s, and the samples that hold them."""
    strokes = [{"key": key, "start": 0.4 + every * i, "end": 0.48 + every * i} for i in range(count)]
    return strokes, int((0.8 + every * count) * synthesis.SAMPLE_RATE)


def energy(strokes: list[dict], num_samples: int, typist: synthesis.Typist, seed: int = 0) -> np.ndarray:
    """Mean power per electrode the presses add to rest, (2, 16) µV^2."""
    power = [
        (synthesis.record_session(s, num_samples, typist, np.random.default_rng(seed), STEADY) ** 2.0).mean(axis=0)
        for s in (strokes, [])
    ]
    return power[0] - power[1]


# ---------------------------------------------------------------------- layout and loader


def test_hdf5_fields_and_attributes_match_the_documented_layout(built):
    import h5py

    root, manifest = built
    rows = emg_loaders.read_qwerty_metadata(root)
    assert [row["session"] for row in rows] == manifest["sessions"] and len(rows) == 4
    for row in rows:
        with h5py.File(root / f"{row['session']}.hdf5", "r") as handle:
            group = handle["emg2qwerty"]
            timeseries = group["timeseries"][()]
            attributes = dict(group.attrs)
        assert timeseries.dtype == LAYOUT_DTYPE
        assert np.allclose(np.diff(timeseries["time"]), 1 / 2000, rtol=0, atol=1e-6)  # 2 kHz
        assert attributes["condition"] == "on_keyboard" and attributes["user"] == row["user"]
        assert attributes["session_name"] == row["session"]
        assert attributes["duration_mins"] == pytest.approx(len(timeseries) / 2000 / 60)
        assert float(row["duration_mins"]) == pytest.approx(attributes["duration_mins"], abs=1e-4)
        keystrokes = json.loads(attributes["keystrokes"])
        assert len(keystrokes) == int(row["num_keystrokes"]) and all(
            set(k) == {"key", "start", "end"} for k in keystrokes
        )
        starts = np.array([k["start"] for k in keystrokes])
        assert np.all(np.diff(starts) > 0) and all(k["end"] > k["start"] for k in keystrokes)
        assert timeseries["time"][0] < starts[0] and starts[-1] < timeseries["time"][-1]
        prompts = json.loads(attributes["prompts"])
        assert len(prompts) == int(row["num_prompts"]) and {p["name"] for p in prompts} == {"text_prompt"}


def test_the_unchanged_loader_reads_every_session_and_the_typed_text(built):
    root, manifest = built
    sessions = emg_loaders.load_emg2qwerty(root)
    assert [s.session_name for s in sessions] == manifest["sessions"]
    assert [s.user for s in sessions] == ["user0", "user0", "user1", "user1"]
    for session in sessions:
        assert session.emg.shape == (len(session.time), 32) and session.emg.dtype == np.float32
        assert session.dropped_keys == {}  # every key has an ENGLISH symbol or is Backspace
        assert {stroke.key for stroke in session.keystrokes} <= TYPED_KEYS
        # Backspace applied, each prompt's keys type exactly its text (typos are corrected)
        assert [text for _, text in emg_loaders.prompt_pairs(session)] == [p["text"] for p in session.prompts]
    assert any(stroke.key == "Key.backspace" for s in sessions for stroke in s.keystrokes)
    intervals = np.concatenate([np.diff([stroke.start for stroke in s.keystrokes]) for s in sessions])
    assert 0.1 < np.median(intervals) < 0.4  # seconds: 30-120 words per minute
    assert manifest["counts"]["keystrokes"] == sum(len(s.keystrokes) for s in sessions)


def test_metadata_holds_out_the_last_user_for_finetuning_and_test(built):
    root, manifest = built
    assert manifest["held_out_user"] == "user1"
    splits = typing_corpus.session_splits(root)
    assert splits == manifest["splits"]
    users = {row["session"]: row["user"] for row in emg_loaders.read_qwerty_metadata(root)}
    assert [users[s] for s in splits["train"] + splits["val"]] == ["user0", "user0"]
    assert [users[s] for s in splits["finetune"] + splits["test"]] == ["user1", "user1"]
    assert all(len(sessions) == 1 for sessions in splits.values())


# --------------------------------------------------------------------- determinism and cache


def test_same_seed_same_bytes_other_seed_other_signal(built, tmp_path):
    root, manifest = built
    again = typing_corpus.build_typing_corpus(tmp_path / "again", TINY)
    assert again["sessions"] == manifest["sessions"]
    for name in [*manifest["sessions"], "metadata"]:
        suffix = ".csv" if name == "metadata" else ".hdf5"
        assert (tmp_path / "again" / f"{name}{suffix}").read_bytes() == (root / f"{name}{suffix}").read_bytes()
    other = emg_loaders.load_emg2qwerty(
        Path(
            typing_corpus.build_typing_corpus(tmp_path / "other", replace(TINY, seed=1, prompts_per_session=1))["root"]
        )
    )
    first = emg_loaders.load_emg2qwerty(root)
    assert [s.prompts[0]["text"] for s in other] != [s.prompts[0]["text"] for s in first]


def test_a_second_build_reuses_the_files_and_a_changed_config_rebuilds(built, tmp_path, monkeypatch):
    root, manifest = built
    times = {path.name: path.stat().st_mtime_ns for path in root.iterdir()}

    def no_rewrite(*args: object) -> dict:
        raise AssertionError("a cached corpus was written again")

    with monkeypatch.context() as patch:
        patch.setattr(typing_corpus, "_write_session", no_rewrite)
        assert typing_corpus.build_typing_corpus(root, TINY) == manifest
    assert {path.name: path.stat().st_mtime_ns for path in root.iterdir()} == times
    out = tmp_path / "changed"
    typing_corpus.build_typing_corpus(out, TINY)
    (out / "stale.hdf5").write_text("left over from an older build")
    rebuilt = typing_corpus.build_typing_corpus(out, replace(TINY, prompts_per_session=1))
    assert rebuilt["counts"]["prompts"] == 4 and sorted(p.stem for p in out.glob("*.hdf5")) == sorted(
        rebuilt["sessions"]
    )


# ---------------------------------------------------------------------- the spatial model


@pytest.mark.parametrize("rotation", [-3.0, -1.25, 0.0, 0.5, 2.0, 2.75])
def test_band_rotation_moves_the_circular_mean_of_every_pickup_pattern(rotation):
    typist = steady_typist()
    angles = 2 * np.pi * np.arange(16) / 16

    def centres(mixing: np.ndarray) -> np.ndarray:  # (2, 16, M) -> (2, M) electrodes
        return np.angle(np.einsum("e,bem->bm", np.exp(1j * angles), mixing)) * 16 / (2 * np.pi)

    shift = centres(synthesis.band_mixing(replace(typist, rotation=(rotation, -rotation)))) - centres(
        synthesis.band_mixing(typist)
    )
    wrapped = (shift - np.array([[rotation], [-rotation]]) + 8) % 16 - 8
    assert np.allclose(wrapped, 0, atol=1e-3)


@pytest.mark.parametrize("key, band, rotation", [("f", LEFT, 3), ("a", LEFT, 5), ("j", RIGHT, -2), ("p", RIGHT, 7)])
def test_the_loudest_electrode_of_a_key_moves_by_the_rotation(key, band, rotation):
    strokes, num_samples = presses(key)
    base = energy(strokes, num_samples, steady_typist())[band]
    rotated_typist = steady_typist(rotation=(rotation, 0.0) if band == LEFT else (0.0, rotation))
    rotated = energy(strokes, num_samples, rotated_typist)[band]
    assert int(rotated.argmax()) == (int(base.argmax()) + rotation) % 16
    assert np.corrcoef(rotated, np.roll(base, rotation))[0, 1] > 0.99


@pytest.mark.parametrize(
    "key, hand",
    [("q", LEFT), ("a", LEFT), ("z", LEFT), ("t", LEFT), ("b", LEFT), ("c", LEFT)]
    + [("y", RIGHT), ("n", RIGHT), ("o", RIGHT), ("p", RIGHT), ("'", RIGHT), ("Key.backspace", RIGHT)],
)
def test_a_key_carries_most_energy_on_its_own_hands_band(key, hand):
    strokes, num_samples = presses(key)
    per_band = energy(strokes, num_samples, steady_typist()).sum(axis=1)  # (2,)
    assert per_band[hand] > 3 * per_band[1 - hand]


@pytest.mark.parametrize("space_hand", [LEFT, RIGHT])
def test_space_is_pressed_by_the_typists_chosen_thumb(space_hand):
    places = [synthesis.key_place(key, space_hand) for key in synthesis.KEYS]
    activations = np.stack([synthesis.key_activations(place, STEADY.co_activation) for place in places])
    typist = steady_typist(space_hand=space_hand, activations=activations)
    strokes, num_samples = presses("Key.space")
    per_band = energy(strokes, num_samples, typist).sum(axis=1)
    assert per_band[space_hand] > 3 * per_band[1 - space_hand]


def test_bursts_sit_at_the_key_presses():
    times = [0.5, 1.1, 1.55, 2.4, 3.0, 3.35]
    strokes = [{"key": key, "start": t, "end": t + 0.08} for key, t in zip("fjdkxm", times)]
    emg = synthesis.record_session(strokes, 4 * 2000, steady_typist(), np.random.default_rng(1), STEADY)
    envelope = uniform_filter1d((emg.astype(np.float64) ** 2).sum(axis=(1, 2)), size=40)  # 20 ms power
    peaks, _ = find_peaks(envelope, height=10 * np.median(envelope), distance=300)
    assert len(peaks) == len(times)
    assert np.all(np.abs(peaks / 2000 - np.array(times)) < 0.05)  # within 50 ms (the lead is 10-30 ms)


def test_users_differ_more_than_sessions_of_one_user():
    """What makes a generic model worse than a personalized one: another typist moves the patterns."""
    typists = [synthesis.draw_typist(f"u{i}", np.random.default_rng(i), TypingConfig(), MyoConfig()) for i in range(6)]

    def patterns(typist: synthesis.Typist, jitter: float) -> np.ndarray:  # (keys, 32) expected log power
        mixing = synthesis.band_mixing(typist, (jitter, -jitter))
        power = np.einsum("bem,kbm->kbe", mixing**2, (typist.muscle_gain * typist.activations) ** 2)
        return np.log(power.reshape(len(synthesis.KEYS), 32) + 1.0)

    within = [np.abs(patterns(t, 0.3) - patterns(t, 0.0)).mean() for t in typists]
    across = [np.abs(patterns(a, 0.0) - patterns(b, 0.0)).mean() for a, b in zip(typists, typists[1:])]
    assert max(within) < min(across)


# ------------------------------------------------------------------------------- timing


@pytest.mark.parametrize(
    "pair, factor",
    [
        ("ff", 1.1),  # the same key again
        ("fr", 1.4),  # one finger, two keys
        ("fj", 0.8),  # the hands alternate
        ("df", 1.0),  # same hand, other finger
        ("th", 0.8 * 0.85),  # alternating and a common bigram
        ("er", 0.85),  # a common bigram on one hand
        ("ed", 1.4 * 0.85),  # one finger, and common
        ("a ", 0.8),  # left pinky, then the right thumb
        ("n ", 1.0),  # right index, then the right thumb
    ],
)
def test_press_intervals_follow_fingers_hands_and_bigrams(pair, factor):
    typist = steady_typist(interval=0.2, interval_spread=0.0, pause_rate=0.0, typo_rate=0.0, space_hand=RIGHT)
    strokes, next_prompt = synthesis.type_prompt(pair, typist, np.random.default_rng(0), 10.0, TypingConfig())
    assert [s["key"] for s in strokes] == [synthesis.key_name(c) for c in pair]
    assert 10.6 <= strokes[0]["start"] <= 11.2  # the reaction to the prompt
    assert strokes[1]["start"] - strokes[0]["start"] == pytest.approx(0.2 * factor)
    assert next_prompt > strokes[-1]["end"]


def test_a_typo_is_a_row_neighbour_then_backspace_then_the_key():
    typist = steady_typist(typo_rate=1.0, pause_rate=0.0)
    strokes, _ = synthesis.type_prompt("hello", typist, np.random.default_rng(0), 0.0, TypingConfig())
    keys = [s["key"] for s in strokes]
    assert keys[1::3] == ["Key.backspace"] * 5 and keys[2::3] == list("hello")
    neighbours = {"h": "gj", "e": "wr", "l": "k", "o": "ip"}  # QWERTY rows, letters only
    assert all(wrong in neighbours[right] for wrong, right in zip(keys[0::3], "hello"))


# ------------------------------------------------------------------ configs, profiles, CLI


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TypingCorpusConfig(num_users=1), "num_users .* got 1"),
        (lambda: TypingCorpusConfig(sessions_per_user=1), "finetune_sessions < sessions_per_user, got 1, 1"),
        (lambda: TypingCorpusConfig(prompts_per_session=0), "prompts_per_session .* got 0"),
        (lambda: TypingCorpusConfig(val_sessions=5), "val_sessions .* got 5"),
        (lambda: TypingCorpusConfig(min_words=5, max_words=3), "got 5, 3"),
        (lambda: TypingCorpusConfig(closed_fraction=1.5), "closed_fraction .* got 1.5"),
        (lambda: TypingConfig(interval=(0.3, 0.1)), r"interval .* got \(0.3, 0.1\)"),
        (lambda: TypingConfig(typo_rate=-0.1), "typo_rate .* got -0.1"),
        (lambda: TypingConfig(hand_alternation=0.0), "hand_alternation .* got 0.0"),
        (lambda: MyoConfig(burst_width=(0.0, 0.02)), r"burst_width .* got \(0.0, 0.02\)"),
        (lambda: MyoConfig(max_rotation=-1.0), "max_rotation .* got -1.0"),
        (lambda: MyoConfig(muap_peak=(60.0, 600.0)), r"muap_peak .* got \(60.0, 600.0\)"),
        (lambda: synthesis.key_name("!"), "'!'"),
    ],
)
def test_bad_values_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("profile, users, sessions, prompts", [("smoke", 3, 2, 3), ("quick", 6, 2, 14)])
def test_profile_configs_and_folders(profile, users, sessions, prompts, tmp_path, monkeypatch):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    config = typing_corpus.typing_config_for(profile)
    assert (config.num_users, config.sessions_per_user, config.prompts_per_session) == (users, sessions, prompts)
    folder = "typing" if profile == "quick" else f"typing_{profile}"
    assert typing_corpus.typing_corpus_dir(profile) == str(tmp_path / "data" / folder)


def test_command_line_builds_the_profiles_corpus(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    monkeypatch.setattr(typing_corpus, "typing_config_for", lambda name: replace(TINY, prompts_per_session=1))
    typing_corpus.main(["--profile", "smoke"])
    assert "2 users, 4 sessions" in capsys.readouterr().out
    assert len(emg_loaders.load_emg2qwerty(tmp_path / "data" / "typing_smoke")) == 4
