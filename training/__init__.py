"""Everything with autograd: datasets and readers, feature store, models, two-stage trainer.

Filled in by the model issue; may import ``engines`` (feature extraction reuses the live
path's perception code).
"""
