"""The progress page: a small read-only web service over the tracker's dashboard queries."""
