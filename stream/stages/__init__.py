"""The stage processes: capture (one per source), detect, features, classify."""
