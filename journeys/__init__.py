"""The domain: the journey language (models, loader, validator, rules, durations, graph),
personalization (the bounded Jinja sandbox), the store (SQLite or PostgreSQL, its migrations,
caps, the funnel's queries), reporting (stats, report) and the settings.

It knows no Temporal and no process: it never imports temporalio, workflows, activities,
ingestion, operate, service, telemetry or connection (tests/test_house.py).
"""
