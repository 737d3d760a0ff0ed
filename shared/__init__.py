"""What every cofi service shares: events, topics, settings, the consumer runtime, logging."""
