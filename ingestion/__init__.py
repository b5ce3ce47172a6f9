"""Events into journeys: the one path that ``starter.py event``, ``ingest`` and the HTTP API take.

Client side, not workflow code: the catalog and its index by event name (``index``), the
profile merge and the routing of one event (``pipeline``), the workflow-id rules, re-entry and
deduplication (``router``), files of events (``files``) and Segment's HTTP API (``http_api``).
"""
