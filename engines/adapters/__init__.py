"""Perception adapters: pre- and post-processing around outside models."""
