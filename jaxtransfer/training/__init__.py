"""One training engine: member steps, the members x data mesh, stages, checkpoints."""
