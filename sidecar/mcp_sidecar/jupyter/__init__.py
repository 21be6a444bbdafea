"""Everything that talks to the user's Jupyter server: contents, collaboration rooms, kernels."""

from .errors import JupyterError

__all__ = ["JupyterError"]
