"""The read side: the dashboard queries over the tracker's tables, the rates and ETAs, and
the progress page (`python -m services.dashboard`, `cofi run web`) that shows them.

The tracker writes the tables; this package only reads them. `cofi status` and the Grafana
generator (`cli/`) share its queries, so the three never disagree.
"""
