"""Data: descriptors, audio, features, the embedded speech corpus, real-corpus ingest, batches."""
