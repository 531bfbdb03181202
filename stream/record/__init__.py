"""The annotated video of a run (``hidemo run --record FILE.mp4``).

Detect publishes each analysed frame with its persons on the record topic
(:mod:`stream.record.publisher`, never waiting); a recorder process beside the pipeline
(:mod:`stream.record.recorder`, started and watched by :mod:`stream.record.launcher`)
takes them, draws the persons, their labels and the transcript (:mod:`stream.record.draw`)
and writes one MP4 per stream with PyAV (:mod:`stream.record.writer`).
"""
