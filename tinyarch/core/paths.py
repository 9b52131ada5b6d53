"""Where tinyarch keeps what outlives a run: downloaded models, the QEMU plugin, teacher logits, memory."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CACHE = "~/.cache/tinyarch"


def cache_root() -> Path:
    """`$TINYARCH_CACHE`, or ~/.cache/tinyarch; read at each call, so a changed environment is honoured."""
    return Path(os.environ.get("TINYARCH_CACHE") or DEFAULT_CACHE).expanduser()
