"""Int8 export, C code generation and firmware builds for microcontrollers."""

from tinyarch.core.errors import TinyarchError


class DeployError(TinyarchError, RuntimeError):
    """A deployment step cannot go on; the message says which and why, in one line."""
