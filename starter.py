"""The journeys command line: validate, preview, schema, graph, and the client commands.

    python starter.py validate examples/
    python starter.py preview examples/abandoned-cart.yaml push-reminder --props '{...}'
    python starter.py event user-1 "Added To Cart" --props '{"product_name": "iPhone 14"}'
"""

from __future__ import annotations

from cli.main import main
from telemetry.ending import leave

__all__ = ["main"]

if __name__ == "__main__":
    leave(main())
