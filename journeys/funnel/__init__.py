"""The funnel and its reports, read from the store: who went through each node and edge
(counts), a journey's stats (stats), the journey as a Mermaid graph with its counts (graph), and
the one-page HTML report with its inline SVG pictures (report, report_svg).

The top room of the domain: it reads the store and the language (and prints user data through
journeys.inputs); nothing else of journeys imports it (tests/test_house.py).
"""
