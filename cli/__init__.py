"""The command line, one room: every command of ``starter.py`` (which only calls ``cli.main``).

- ``main``: the parser, and how a command's failure becomes an exit status;
- ``catalog``: validate, preview, schema, graph (no Temporal, no store);
- ``events``: event, profile, ingest, serve; ``not_routed``: what they say was not routed;
- ``records``: status, outbox, inbox, providers;
- ``operations``: list, exit, replay, intellinode; ``funnel``: graph --waiting, stats, report.

The top of the house: it may import every room, and no room imports it (tests/test_house.py).
"""
