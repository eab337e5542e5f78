"""Code that runs inside argilla-server's own virtual environment (started by annotation/server/lifecycle.py).

Only `search_match` is imported by the project's side as well: it must import nothing beyond
the standard library.
"""
