"""The hub's MCP authorization server: a JupyterHub service that lets an MCP client connect with the
endpoint's URL alone, the user logging in through the hub and consenting on a page of ours."""

__version__ = "0.1.0"
