"""hidemo: real-time hidden-emotion recognition; the ``hidemo`` command is :mod:`hidemo.cli`."""

__version__ = "0.1.0"
