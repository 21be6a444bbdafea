"""Per-user MCP server that runs beside one user's Jupyter server."""

__version__ = "0.1.0"
