"""What runs around the journey worker: the embedded dev server (``--dev``), and the process
that holds the worker, the dev server, the mail sink and the HTTP API together."""
