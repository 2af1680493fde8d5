"""Run by tests/test_out_of_core.py in a fresh process: an epoch over a big descriptor file, peak memory.

Usage: python out_of_core_check.py DESCRIPTOR CACHE_DIR; prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import sys


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
    descriptor, cache_dir = sys.argv[1], sys.argv[2]
    from ctclab.data.features import FeatureConfig
    from ctclab.data.generator import AudioGenerator

    baseline = peak_mb()
    generator = AudioGenerator(
        descriptor, FeatureConfig(), minibatch_size=32, cache_dir=cache_dir, featurize_workers=2, verbose=False
    )
    after_load = peak_mb()
    frames = 0
    for index in range(len(generator)):
        inputs, _ = generator[index]
        frames += int(inputs["input_length"].sum())
    print(
        json.dumps(
            {
                "utterances": len(generator.texts),
                "frames": frames,
                "store_frames": generator.feats.frames,
                "feature_dim": generator.features.feature_dim,
                "baseline_mb": baseline,
                "after_load_mb": after_load,
                "peak_mb": peak_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
