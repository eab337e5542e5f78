"""The local Argilla's life cycle (`lifecycle`: `serve`; `background`: `--detach` and `stop`;
`postgres`; `install`: argilla-server's own venv) and, in `argilla_process/`, the code that runs
inside argilla-server's processes. This file imports nothing: the server venv imports the package."""
