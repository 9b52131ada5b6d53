"""Tool nodes: data, training, distillation, profiling, Pareto analysis, explanation, deployment."""
