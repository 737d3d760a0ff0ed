"""The distributor: assigns each uploaded file a GPU host, and triages files after LID."""
