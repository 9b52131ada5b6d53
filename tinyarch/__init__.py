"""tinyarch: LLM agents design, train, explain and deploy neural networks for microcontrollers."""

__version__ = "0.1.0"
