"""The live system: wire protocol, stage processes, batching, windows, supervisor, sinks, bench."""
