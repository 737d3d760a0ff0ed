"""The tracker: the only writer of the dashboard tables, fed by every topic of the pipeline."""
