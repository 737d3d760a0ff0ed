"""`make bench`: the pipeline measured against its physical limits (issue 6)."""
