"""Augmented copies of a split: the fixed noisy + reverberant test split, and one clip before / after.

:func:`write_augmented_split` writes a split through :mod:`ctclab.data.augment` with every draw
fixed by a seed (wav files plus a descriptor file), so a model is scored on the same noisy copy
in every run; :func:`augmentation_example` returns one utterance before and after one draw.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile

from ctclab.data.audio import read_audio
from ctclab.data.augment import AugmentConfig, Augmenter, AugmentParams
from ctclab.data.descriptors import read_descriptors, write_descriptors

# the held-out noisy + reverberant split: every clip gets a room and noise, nothing else
NOISY_REVERBERANT = AugmentConfig.disabled(
    reverb=True, reverb_probability=1.0, rt60_range_s=(0.3, 0.9), drr_range_db=(0.0, 10.0),
    noise=True, noise_probability=1.0, snr_range_db=(5.0, 20.0),
)  # fmt: skip


def write_augmented_split(
    desc_in: str | Path,
    out_dir: str | Path,
    config: AugmentConfig = NOISY_REVERBERANT,
    seed: int = 0,
    sample_rate: int = 16000,
) -> Path:
    """Write an augmented copy of a split: ``out_dir/wav/<n>.wav`` and ``out_dir/<desc_in's name>``.

    Utterance n is augmented with ``np.random.default_rng((seed, n))``, so the same seed gives
    the same noise types, SNRs and rooms per utterance, whatever else changes; babble is made
    from the split's other utterances. Each descriptor line keeps the input's fields and adds
    ``source`` (the clean file) and ``augmentation`` (the drawn parameters). A copy whose
    ``manifest.json`` matches (input descriptor, config, seed) is returned as it is; otherwise
    the folder's wav files are replaced.

    Args:
        desc_in: descriptor file of the clean split (e.g. data/speech/test_corpus.json).
        out_dir: folder of the augmented copy.
        config: what to apply (every clip reverberated and noisy by default).
        seed: fixes every draw.
        sample_rate: of the audio, in Hz.

    Returns:
        The augmented descriptor file (keys relative to ``out_dir``).
    """
    desc_in, out_dir = Path(desc_in), Path(out_dir)
    desc_out = out_dir / desc_in.name
    identity = {
        "descriptor": hashlib.sha1(desc_in.read_bytes()).hexdigest(),
        "config": json.loads(json.dumps(asdict(config))),
        "seed": seed,
    }
    manifest = out_dir / "manifest.json"
    if desc_out.is_file() and manifest.is_file() and json.loads(manifest.read_text()) == identity:
        return desc_out
    records = read_descriptors(desc_in)
    clips = [read_audio(record["key"], sample_rate) for record in records]
    augmenter = Augmenter(config, clips, sample_rate)
    manifest.unlink(missing_ok=True)  # written last: marks a complete copy
    (out_dir / "wav").mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / "wav").glob("*.wav"):
        stale.unlink()
    written = []
    for index, (record, clip) in enumerate(zip(records, clips)):
        augmented, params = augmenter.apply(clip, np.random.default_rng((seed, index)), exclude=index)
        key = f"wav/{index:06d}.wav"
        soundfile.write(str(out_dir / key), augmented, sample_rate, subtype="PCM_16")
        written.append(
            dict(
                record,
                key=key,
                duration=round(augmented.shape[0] / sample_rate, 4),
                source=str(Path(record["key"]).resolve()),
                augmentation=params.as_record(),
            )
        )
    write_descriptors(written, desc_out)
    manifest.write_text(json.dumps(identity, indent=1))
    return desc_out


def augmentation_example(
    desc_file: str | Path, index: int = 0, config: AugmentConfig = NOISY_REVERBERANT, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, AugmentParams]:
    """Utterance ``index`` of ``desc_file`` before and after one draw of ``config``.

    Babble comes from the file's other utterances (at most 50 of them are read).

    Returns:
        (clean (N,), augmented (N',), the parameters drawn), float32 at 16 kHz.
    """
    records = read_descriptors(desc_file)
    if not 0 <= index < len(records):
        raise ValueError(f"index {index} is outside {desc_file} ({len(records)} utterances)")
    clean = read_audio(records[index]["key"])
    pool = [read_audio(r["key"]) for i, r in enumerate(records[:50]) if i != index]
    augmented, params = Augmenter(config, pool).apply(clean, np.random.default_rng(seed))
    return clean, augmented, params
