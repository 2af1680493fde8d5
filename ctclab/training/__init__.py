"""Training: the CTC loss, the trainer with its callbacks, training options, evaluation."""
