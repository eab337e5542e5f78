"""The Argilla workflow: serve, push candidate pairs, pull annotations into a preference dataset.

Run as `python -m annotation <command>`. This file imports nothing: the package is also put on
the path of the argilla-server processes (their own virtual environment) for `server/argilla_process/`.
"""
