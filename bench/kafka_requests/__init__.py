"""A hook that counts a process's Kafka requests (`bench.request_count`); its folder goes on a
measured process's PYTHONPATH, so that Python imports its `sitecustomize` at start-up."""
