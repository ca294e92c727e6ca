"""The core's default hook implementations, registered through the ``hybridos.plugins`` entry points.

Each module is a thin adapter over a core API and is ``trylast`` so that any installed plugin is asked first.
"""
