"""Assemble a search from its RunConfig and run (or resume) its graph with SQLite checkpoints."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from tinyarch.agents.context import SearchContext
from tinyarch.agents.graph import build_graph
from tinyarch.core.config import RunConfig
from tinyarch.core.errors import TinyarchError
from tinyarch.core.rundir import RunDir
from tinyarch.core.spaces import load_space
from tinyarch.tools.executors import Executor, LocalExecutor, RayExecutor

NATS_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16-120": 120}
KEEP_CHECKPOINTS = 20
"""Checkpoints kept per run: the newest is what a resume needs; a few more help inspect the last steps."""
RECURSION_LIMIT = 100_000
"""LangGraph counts node steps; a long search takes many (about 6 per iteration)."""


class RunExists(TinyarchError, RuntimeError):
    """A new run's name is taken, or a live search holds the run to resume."""


def build_context(config: RunConfig, rundir: RunDir) -> SearchContext:
    from tinyarch.agents.designer import LLMDesigner, RandomEditor, ScreenedPool
    from tinyarch.agents.llm import StructuredLLM, make_backend
    from tinyarch.agents.strategies import (
        LocalSearch,
        NSGA2Strategy,
        RandomStrategy,
        RegularizedEvolution,
        SurrogateSearch,
    )
    from tinyarch.memory.store import Memory

    space = load_space(config.space)
    in_channels = None
    if config.evaluator == "nats":
        from tinyarch.tools.evaluators import NatsTableEvaluator

        evaluator: Any = NatsTableEvaluator(config.dataset, config.nats_table)
        num_classes = NATS_CLASSES[config.dataset]
    else:
        from tinyarch.tools.data import load_data
        from tinyarch.tools.distill import KDConfig, TeacherError
        from tinyarch.tools.evaluators import ProxyTrainingEvaluator
        from tinyarch.tools.train import RECIPES

        data = load_data(config.dataset, config.data_dir, seed=config.seed)
        proxy_data = data.with_train_subset(config.proxy_images, config.seed) if config.proxy_images else data
        if config.teacher is not None and not config.teacher.is_file():
            raise TeacherError(f"teacher checkpoint {config.teacher} not found")
        recipe, final = (
            RECIPES[name].model_copy(update={"epochs": epochs} if epochs else {})
            for name, epochs in (("proxy", config.proxy_epochs), ("full", config.final_epochs))
        )
        evaluator = ProxyTrainingEvaluator(
            proxy_data,
            recipe,
            final,
            rundir.candidates,
            seed=config.seed,
            teacher=config.teacher,
            progress=False,
            full_data=data,
            deploy_board=config.deploy_board,
            distill=config.distill,
            kd=KDConfig(
                temperature=config.kd_temperature, alpha_start=config.kd_alpha_start, alpha_end=config.kd_alpha_end
            ),
        )
        num_classes, in_channels = data.info.num_classes, data.info.channels
    executor = make_executor(config, evaluator)
    strategies: dict[str, Callable[[], Any]] = {
        "llm": lambda: ScreenedPool(LLMDesigner()),
        "screened": lambda: ScreenedPool(RandomEditor()),
        "local": LocalSearch,
        "rea": RegularizedEvolution,
        "bo": SurrogateSearch,
        "nsga2": NSGA2Strategy,
        "random": RandomStrategy,
    }
    llm = None
    if config.strategy == "llm":
        backend = make_backend(config.llm, config.llm_url, seed=config.seed)
        llm = StructuredLLM(backend, outage_wait_s=config.outage_wait)
        llm.probe()  # an unreachable server fails the command now, not after the outage wait
    memory = None
    if config.memory == "on":
        memory = Memory(config.memory_path, config.memory_url, config.outage_wait)
    strategy = strategies[config.strategy]()
    return SearchContext(config, space, evaluator, strategy, rundir, num_classes, in_channels, memory, llm, executor)


class RunCheckpoints(SqliteSaver):
    """LangGraph's SQLite checkpointer that keeps only a run's newest checkpoints: a resume needs only the
    latest, so the database stays the same size however long the run (SQLite reuses the freed pages)."""

    def prune(self, thread: str, keep: int = KEEP_CHECKPOINTS) -> None:
        newest = "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_id DESC LIMIT ?"
        with self.cursor() as cursor:
            for table in ("checkpoints", "writes"):
                cursor.execute(
                    f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_id NOT IN ({newest})",
                    (thread, thread, keep),
                )


def make_executor(config: RunConfig, evaluator: Any) -> Executor:
    """The configured executor; a Ray one connects now, so a wrong address fails before the search starts."""
    if config.executor == "local":
        return LocalExecutor(evaluator)
    return RayExecutor(evaluator, config.ray_address, config.cpus_per_trial, config.gpus_per_trial, config.max_retries)


def run_search(
    config: RunConfig | None,
    runs_root: Path = Path("runs"),
    resume: str | None = None,
    on_update: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run a new search (`config`) or continue a killed one (`resume=NAME`); returns the final state with
    the run's history.

    `on_update(node, update)` sees each node's update as it finishes, `on_update("start", {"node": node})`
    as a node starts, each trial's progress within the evaluate node as
    `on_update("trial", TrialEvent.progress(...))`, and each wait for an unreachable server and its recovery
    as `on_update("outage", OutageEvent.record())`.
    """
    if resume:
        rundir = RunDir(runs_root / resume)
        if not rundir.config.is_file():
            raise RunExists(f"no run {resume!r} under {runs_root}/ to resume")
        config = RunConfig.load(rundir.config)
    else:
        assert config is not None
        rundir = RunDir(runs_root / config.name)
        if rundir.checkpoints.is_file():
            raise RunExists(f"run {config.name!r} exists in {rundir.root}; resume it with --resume {config.name}")
        config.save(rundir.config)
    ctx = build_context(config, rundir)
    lock = rundir.lock_search()
    if lock is None:
        ctx.executor.close()
        pid = rundir.search_pid()
        raise RunExists(f"run {config.name!r} is already being searched" + (f" (pid {pid})" if pid else ""))
    connection = sqlite3.connect(str(rundir.checkpoints), check_same_thread=False)
    try:
        checkpoints = RunCheckpoints(connection)
        graph = build_graph(ctx, checkpoints)
        run_config = {"configurable": {"thread_id": config.name}, "recursion_limit": RECURSION_LIMIT}
        start = None if resume else {"started_at": time.time(), "iteration": 0}
        # "sync": each node's checkpoint is on disk before the next node starts, so a kill loses at most one node.
        modes = ["updates", "custom", "tasks"]  # custom: the evaluate node's trial progress; tasks: a node starts
        shown = 0  # history records already handed to on_update
        for mode, chunk in graph.stream(start, run_config, stream_mode=modes, durability="sync"):
            if mode == "tasks" and "input" in chunk:  # a node starts: its outage traces carry its iteration
                ctx.iteration = chunk["input"].get("iteration", ctx.iteration)
            if mode == "updates" and "remember" in chunk:
                checkpoints.prune(config.name)
            if on_update is None:
                continue
            if mode == "updates":
                for node, update in chunk.items():
                    update = dict(update or {})
                    if "history_len" in update:  # the candidates the node added, for the live view
                        update["history"] = ctx.history.records[shown : update["history_len"]]
                        shown = update["history_len"]
                    on_update(node, update)
            elif mode == "custom" and "outage" in chunk:
                on_update("outage", chunk["outage"])
            elif mode == "custom":
                on_update("trial", chunk)
            elif "input" in chunk:  # a task starts; its "result" event repeats the update
                on_update("start", {"node": chunk["name"]})
        state = dict(ctx.history.view(graph.get_state(run_config).values))
    finally:
        connection.close()
        ctx.executor.close()
        lock.release()
    return state
