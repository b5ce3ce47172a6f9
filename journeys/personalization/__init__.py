"""Personalization: Jinja templates rendered with ``profile`` and ``event`` in a sandbox bounded
in size and time (sandbox, bounds), and what a template reads (personalize: its variables, its
use of the event, its syntax), for the validator.

It imports the language and nothing else of journeys: never the store, the validator or the
funnel, so that rendering stays free of I/O (tests/test_house.py).
"""
