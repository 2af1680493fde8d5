"""The course's ``sample_models``: models 0-4 and the final model's builder (course names).

Owners: :mod:`ctclab.models.course` (models 0-4 and the reference final model, built from
:func:`ctclab.models.deep.cnn_birnn_model`), :mod:`ctclab.models.deep` (the other deep models),
:mod:`ctclab.models.attention`, and :mod:`ctclab.models.registry` (``build`` by name,
``cnn_output_length``).
"""

from ctclab.models.course import (
    bidirectional_rnn_model,
    cnn_rnn_model,
    deep_rnn_model,
    final_model,
    rnn_model,
    simple_rnn_model,
)
from ctclab.models.registry import build, cnn_output_length

__all__ = [
    "bidirectional_rnn_model",
    "build",
    "cnn_output_length",
    "cnn_rnn_model",
    "deep_rnn_model",
    "final_model",
    "rnn_model",
    "simple_rnn_model",
]
