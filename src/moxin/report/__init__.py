"""`moxin report`: one self-contained HTML page (inline CSS and SVG, no network) for a run, a release, or two."""
