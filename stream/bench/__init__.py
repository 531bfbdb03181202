"""``hidemo bench``: latency and throughput of engines and of the pipeline."""
