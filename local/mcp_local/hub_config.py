"""JupyterHub config file for local mode: ``jupyterhub -f <this file>``.

Everything variable comes from the JSON the demo wrote (``JUPYTERHUB_MCP_DEMO_CONFIG``, built by
``plan.hub_config``), so this file stays static and the configuration stays testable as data.
"""

import json
import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821  (provided by the traitlets loader)

with open(os.environ["JUPYTERHUB_MCP_DEMO_CONFIG"]) as f:
    for section, traits in json.load(f).items():
        for name, value in traits.items():
            setattr(c[section], name, value)
