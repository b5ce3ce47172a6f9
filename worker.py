"""Run the journey worker; with ``--dev``, an embedded Temporal dev server first.

    python worker.py          # a worker for the cluster Temporal's configuration names
    python worker.py --dev    # plus `temporal server start-dev`, persisted in <data dir>/temporal.db
    python worker.py --dev --serve   # plus Segment's HTTP tracking API on 127.0.0.1:8000 (make run)

Settings come from the environment (``journeys.settings.Settings``; the connection from
Temporal's own TEMPORAL_* variables and temporal.toml profiles). Ctrl-C or SIGTERM shuts the
worker down gracefully, then the dev server (``service.app``, ``service.devserver``). A setting
that cannot work is one line on stderr and exit status 2, before anything is started.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import structlog

from ingestion.serving import host_port
from journeys.language.problems import UsageError
from journeys.settings import load_settings
from service.app import run_worker
from service.devserver import DevServerError, StartupError, start_dev_server
from service.runtime import leave
from telemetry.logs import configure_logging

__all__ = ["DevServerError", "StartupError", "main", "run_worker", "start_dev_server"]
log = structlog.get_logger("worker")


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 stopped, 1 failed, 2 a setting that cannot work (one line on stderr)."""
    parser = argparse.ArgumentParser(description="Run the journey worker.")
    parser.add_argument("--dev", action="store_true", help="start an embedded Temporal dev server first")
    parser.add_argument("--no-ui", action="store_true", help="with --dev: no Temporal Web UI (--headless)")
    parser.add_argument("--serve", nargs="?", const="127.0.0.1:8000", metavar="HOST:PORT",
                        help="also serve Segment's HTTP tracking API (default 127.0.0.1:8000)")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        serve = host_port(args.serve, "--serve") if args.serve else None
        settings = load_settings()
        configure_logging(format=settings.log_format)
        return asyncio.run(run_worker(settings, dev=args.dev, ui=not args.no_ui, serve=serve,
                                      metrics_address=settings.metrics_address))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        log.error("startup failed", error=str(exc).splitlines()[0])
        print(f"error: {exc}", file=sys.stderr)
    except Exception:
        log.exception("worker failed")
    return 1


if __name__ == "__main__":
    leave(main())
