"""Command-line interface: ``alexnet <command>``, a thin layer over the Python API."""
