"""Writing text: sampling runs, and the continuous batching that `charrnn serve` steps."""
