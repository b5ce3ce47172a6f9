"""The domain, in rooms, lowest first (tests/test_house.py holds each to what it may import):

- ``language``: the journey format (models, durations, zones, limits), the loader, problems;
- ``personalization``: the bounded Jinja sandbox and what templates read;
- ``validation``: the rules of the format and of the product page, the catalog of a folder;
- ``store``: SQLite or PostgreSQL, its tables and migrations, caps, IntelliNODE, outcomes;
- ``funnel``: counts per node and edge, stats, the graph and the HTML report.

Shared modules at this level: settings (every knob), events (which journeys an event starts,
wakes or ends), ingest (events from a file), inputs (what a person types and reads), numbers,
egress (the rules for addresses that come from data).

It knows no Temporal and no process: it never imports temporalio, workflows, activities,
ingestion, operate, service, telemetry, connection or cli (tests/test_house.py).
"""
