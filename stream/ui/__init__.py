"""The live web view of ``hidemo run --ui``: the pipeline's published outputs on a page.

The view is a subscriber, never a stage in the frame path. Three small publishers feed it,
each a PUB socket sent to without blocking (a slow or absent view costs them nothing):
detect's preview of analysed frames (:mod:`stream.ui.preview`), the supervisor's stage
statuses (:mod:`stream.ui.monitor`) and classify's transcript lines
(:mod:`stream.ui.transcript`); predictions come from the pipeline's own predictions PUB.
The web server (:mod:`stream.ui.server`, Starlette on uvicorn) runs as its own process,
started and restarted by :mod:`stream.ui.launcher`: if it dies, the pipeline goes on.
"""
