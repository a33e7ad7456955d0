"""The dashboard (`datmo ui`) and `datmo plot`: a Werkzeug app over the controllers, and
plain HTML/JS pages in static/ with vendored chart libraries (licences beside them)."""
