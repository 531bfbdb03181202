"""Per-video, time-stamped feature arrays (the feature store) and how they are made."""
