"""One ``hidemo run``: the command line, preflight, the supervisor of the stage processes,
the run summary, the terminal view and resource meter."""
