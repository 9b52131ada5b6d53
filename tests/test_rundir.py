"""A search is alive while its process holds runs/NAME/search.lock; the lock dies with the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import suppress
from pathlib import Path

from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import RunDir

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tinyarch.core.rundir import RunDir

    lock = RunDir(Path(sys.argv[1])).lock_search(wait_s=0)
    print("held" if lock else "refused", flush=True)
    time.sleep(600)
    """
)


def hold(root: Path) -> subprocess.Popen[str]:
    """A process that takes the run directory's lock and keeps it until killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_search_is_alive_while_its_process_holds_the_lock_and_dead_after_kill_9(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path / "run")
    assert not rundir.search_running() and rundir.search_pid() is None
    holder = hold(rundir.root)
    try:
        assert rundir.search_running() and rundir.search_pid() == holder.pid
        assert rundir.lock_search(wait_s=0.1) is None  # a second search is refused
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The file and the dead process's pid remain; the lock went with the process.
    assert rundir.lock_file.read_text().strip() == str(holder.pid)
    assert not rundir.search_running() and rundir.search_pid() is None
    with rundir.lock_search(wait_s=0) as lock:
        assert lock is not None and rundir.search_running() and rundir.search_pid() == os.getpid()
    assert not rundir.search_running() and rundir.lock_file.read_text() == ""


def test_a_stale_file_naming_a_live_pid_is_not_a_live_search(tmp_path: Path) -> None:
    """What fooled the old pid file: a killed search's pid reused by an unrelated live process."""
    rundir = RunDir(tmp_path / "run")
    rundir.lock_file.write_text(str(os.getpid()))
    (rundir.root / "search.pid").write_text(str(os.getpid()))
    assert not rundir.search_running() and rundir.search_pid() is None


def test_a_forked_child_does_not_keep_a_killed_search_alive(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path / "run")
    code = textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        from tinyarch.core.rundir import RunDir

        lock = RunDir(Path(sys.argv[1])).lock_search(wait_s=0)
        if os.fork() == 0:  # a worker forked by the search outlives it
            time.sleep(600)
        print("held", flush=True)
        time.sleep(600)
        """
    )
    search = subprocess.Popen(
        [sys.executable, "-c", code, str(rundir.root)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert search.stdout is not None and search.stdout.readline().strip() == "held"
        assert rundir.search_running()
        search.send_signal(signal.SIGKILL)
        search.wait(timeout=30)
        # the child closes its copy of the lock as it starts (at-fork hook); under load that may come a moment later
        deadline = time.monotonic() + 10
        while rundir.search_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not rundir.search_running()  # while the worker sleeps on for minutes
    finally:
        with suppress(ProcessLookupError):
            os.killpg(search.pid, signal.SIGKILL)  # the forked worker


def test_a_second_search_of_a_running_run_is_one_error_line(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    rundir = RunDir(runs / "busy")
    config = RunConfig(
        name="busy", evaluator="proxy", dataset="synthetic", strategy="random", memory_path=tmp_path / "memory"
    )
    config.save(rundir.config)
    holder = hold(rundir.root)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "tinyarch.interfaces.cli", "search", "--resume", "busy", "--runs-dir", str(runs)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2, second.stderr
    assert lines == [f"error: run 'busy' is already being searched (pid {holder.pid})"]
    assert not rundir.checkpoints.exists()
