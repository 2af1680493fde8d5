"""Live decoding: BrainFlow boards (synthetic, playback, Cyton), the streaming pipeline, decoders."""
