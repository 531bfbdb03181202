"""Defaults and limits of ``hidemo label`` that its parser and its config model share (a
module of its own, importing nothing, so ``hidemo label --help`` stays instant)."""

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_TIMEOUT_S = 120.0
"""A hosted model that thinks over eight images can take a minute to answer."""
DEFAULT_MAX_RETRY_AFTER_S = 120.0
MAX_WAIT_S = 3600.0
"""The largest timeout or Retry-After cap accepted: past an hour, a typo is likelier."""
