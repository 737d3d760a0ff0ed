"""The `cofi` command line: the upload system's side, operators' tools, and the demo."""
