"""Kopf operator that injects the MCP sidecar into KubeSpawner user pods and wires its routes."""

__version__ = "0.1.0"
