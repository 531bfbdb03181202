"""Runtime backends behind :class:`engines.engine.Engine`. Each imports its runtime lazily."""
