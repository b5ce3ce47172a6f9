"""Validation: every rule of the format and of the product page (rules, scope: where event
personalization is available), one list of problems for a file or a folder (validate), and the
catalog of a folder's valid journeys that events are routed to (catalog).

It sits above the language and personalization (templates are checked by the sandbox that
renders them) and imports nothing else of journeys: never the store or the funnel
(tests/test_house.py).
"""
