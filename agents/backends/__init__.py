"""One chat backend per provider (aideml-style): llama.cpp in-process, Ollama, OpenAI-compatible."""
