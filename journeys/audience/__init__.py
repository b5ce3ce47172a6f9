"""Audiences: a ``segment`` entry asked of the store (segment: one SQL query, parameters bound,
paged by user id) and the moments of its schedule (moments: when an occurrence is, and when
each user enters in their own timezone).

It imports the language and the store only: never Temporal, validation or the funnel
(tests/test_house.py).
"""
