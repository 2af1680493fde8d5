"""CTC Lab: CTC speech recognition, carried over to surface EMG and a live OpenBCI stream.

Subpackages, one concern each (the course's own modules, char_map, utils, data_generator,
sample_models and train_utils, sit at the repository root and call into these):

- :mod:`ctclab.data`: descriptors (JSON lines), audio, features, the embedded corpus, ingest, generator
- :mod:`ctclab.models`: the builder registry, the course's models, deep and attention models, layers
- :mod:`ctclab.training`: CTC loss, the trainer, training options, evaluation
- :mod:`ctclab.decoding`: greedy and beam search, the n-gram LM, metrics, tuning, CTC visuals
- :mod:`ctclab.emg`: sEMG signal, synthesis, corpus, loaders, training and scores
- :mod:`ctclab.live`: BrainFlow boards, the streaming pipeline, live decoding
- :mod:`ctclab.report`: the notebook runner, the report page, plots
- :mod:`ctclab.runs`: the run folder; :mod:`ctclab.alphabet`: characters and the blank;
  :mod:`ctclab.profiles`: smoke / quick / full
"""

__version__ = "0.2.0"
