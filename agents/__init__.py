"""LangGraph state machine: state, graph, Designer and Critic agents, LLM backends."""
