"""The C firmware (kernels, board support, main, the QEMU plugin and project.mk), shipped as package
data: `importlib.resources.files("tinyarch.firmware")` reads it; tinyarch.tools.deploy copies it into
each generated project."""
