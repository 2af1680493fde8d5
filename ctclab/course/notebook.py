"""What the course notebooks call around the exercises: build what is written, show predictions.

:func:`available_models` builds the models whose builders are written and names the ones that
are not, so a learner's notebook runs top to bottom while exercises are still open.
:func:`get_predictions` is the course's STEP 3: one utterance, its truth and the model's
transcript, with the audio to listen to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctclab.profiles import Profile, get_profile

if TYPE_CHECKING:
    import keras

PARTITIONS = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}


def available_models(builders: Mapping[str, Callable[[], keras.Model]]) -> dict[str, keras.Model]:
    """Build every model whose builder is written; print one line for each that is not yet.

    Args:
        builders: run name -> a function of no arguments that builds the model (e.g. a lambda
            calling ``rnn_model(input_dim=161, ...)``).

    Returns:
        run name -> model, for the builders that returned a model.
    """
    models = {}
    for name, build in builders.items():
        try:
            models[name] = build()
        except NotImplementedError:
            print(f"{name}: not written yet (its builder still has a TODO): left out of training below")
        except Exception as error:  # a learner's bug: say it, keep the notebook going
            print(f"{name}: building it raised {type(error).__name__}: {error}; left out of training below")
    return models


def get_predictions(
    index: int,
    partition: str,
    input_to_softmax: keras.Model,
    model_path: str | Path,
    profile: Profile | None = None,
    show_audio: bool = True,
) -> dict[str, Any]:
    """Print one utterance's true and predicted transcripts (the course's STEP 3), with its audio.

    Args:
        index: the utterance, in the partition's descriptor order (after the generator's skips).
        partition: "train", "validation" (or "valid") or "test" (the unseen voices).
        input_to_softmax: the acoustic model (its architecture; the weights are loaded).
        model_path: the trained weights, ``results/<profile>/<family>/<run>/model.keras``; the
            run's features and training normalizer are read from the same folder.
        profile: whose corpus to read (default: $PROFILE, else quick).
        show_audio: display an audio player when running in a notebook.

    Returns:
        {"truth", "prediction", "audio_path"}.
    """
    from ctclab.decoding.greedy import greedy_decode
    from ctclab.runs import Run
    from ctclab.training.evaluation import scoring_generator

    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {sorted(PARTITIONS)}, got {partition!r}")
    profile = profile or get_profile()
    run = Run(Path(model_path).parent)
    input_to_softmax.load_weights(model_path)
    generator = scoring_generator(run, input_to_softmax, profile.descriptor(PARTITIONS[partition]))
    if not 0 <= index < len(generator.texts):
        raise ValueError(f"index {index} is outside the {partition} partition ({len(generator.texts)} utterances)")
    features = generator.normalized_feature(index)[None].astype(np.float32)  # (1, T, F)
    probabilities = np.asarray(input_to_softmax.predict_on_batch(features))[0]  # (T', C)
    prediction = greedy_decode(
        probabilities, int(input_to_softmax.output_length(features.shape[1])), generator.alphabet
    )
    truth, audio_path = generator.texts[index], generator.keys[index]
    if show_audio:
        from IPython.display import Audio, display

        display(Audio(audio_path))
    print("-" * 80 + f"\nTrue transcription:\n\n{truth}\n" + "-" * 80)
    print(f"Predicted transcription:\n\n{prediction}\n" + "-" * 80)
    return {"truth": truth, "prediction": prediction, "audio_path": audio_path}
