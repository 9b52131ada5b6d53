"""The core model: the architecture spec, the search spaces, budgets and costs, run configuration and
the run directory. It imports nothing above it and needs no torch, TensorFlow or LLM runtime."""
