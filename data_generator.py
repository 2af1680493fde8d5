"""The course's ``data_generator``: descriptors in, padded CTC minibatches out (course names).

Owners: :mod:`ctclab.data.descriptors` (the JSON-lines format), :mod:`ctclab.data.ingest`
(``create_desc_json`` for LibriSpeech / LJSpeech folders), :mod:`ctclab.data.generator`
(:class:`AudioGenerator`, ``vis_train_features``), :mod:`ctclab.data.features` (the normalizer).
"""

from ctclab.data.descriptors import read_descriptors, write_descriptors
from ctclab.data.features import Normalizer
from ctclab.data.generator import AudioGenerator, vis_train_features
from ctclab.data.ingest import create_desc_json

__all__ = [
    "AudioGenerator",
    "Normalizer",
    "create_desc_json",
    "read_descriptors",
    "vis_train_features",
    "write_descriptors",
]
