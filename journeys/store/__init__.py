"""The store: profiles, the outbox and inbox, event receipts and entries in SQLite or PostgreSQL
(database), its tables and their migrations (tables, migrations/), and what is decided or kept
in one of its transactions: frequency caps (caps), IntelliNODE's path choices (intellinode),
conversions, time-outs and ends (outcomes).

It imports the language and journeys.numbers only: never personalization, validation or the
funnel (tests/test_house.py).
"""
