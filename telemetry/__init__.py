"""Telemetry: the process's log lines and the project's metrics (``telemetry.logs``), and how a
process ends with its lines flushed (``telemetry.ending``).

Low in the house: the worker, the API, the command line, the workflows and the activities log
and count through it; it imports Temporal's SDK (its loggers and meter) and the domain's
nothing but names. It never imports workflows, activities, ingestion, operate or service.
"""
