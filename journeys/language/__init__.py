"""The journey language: what a journey file says (models, durations, zones), what it may hold
(limits), reading it (loader) and the problems a file can have (problems: rule codes, UsageError).

The lowest room of the domain: it imports no other part of journeys (tests/test_house.py).
"""
