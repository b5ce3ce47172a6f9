"""The journey interpreter on Temporal: one workflow per user and journey (``journey``), its
waits, outcomes, exits, input and state. Workflow code: deterministic, run in the sandbox; it
imports the domain, the activities' input models and telemetry, never ingestion, operate,
service or connection (tests/test_house.py).
"""
