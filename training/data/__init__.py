"""Datasets: manifests, readers for iMiGUE, and the synthetic generator."""
