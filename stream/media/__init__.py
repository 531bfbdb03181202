"""Where frames and sound come from: sources (camera, file, URL, demo clip), the demo clip,
a source's audio track and its speech segments. Imports no other sub-package of
``stream``."""
