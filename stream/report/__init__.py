"""``hidemo report RUN_DIR``: one self-contained HTML page (and PNGs) from a finished run.

:mod:`stream.report.outputs` reads what ``hidemo run --out`` kept, :mod:`stream.report.figures`
draws the timelines and the latency (matplotlib), :mod:`stream.report.page` writes the page
(every picture inline, no script, no network request) and :mod:`stream.report.cli` is the
command. It reads files only: nothing of the live pipeline is imported.
"""
