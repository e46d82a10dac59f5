"""Checkpoint readers, name maps and weight transfer for keras_slowfast."""
