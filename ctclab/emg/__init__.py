"""Surface EMG: signal processing and features, synthesis, the synthetic corpus, real-format loaders,
training and scores."""
