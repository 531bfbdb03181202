"""Weak supervision: a teacher (a VLM, or a trained hidemo checkpoint) labels unlabelled
videos and explains itself; the labels are cached in a SQLite store and merged into
stage-2 training (``hidemo label``, ``hidemo train --pseudo-labels``)."""
