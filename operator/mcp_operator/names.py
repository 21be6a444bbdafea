"""Kubernetes-safe names, the way KubeSpawner makes them (pure, no I/O).

- `safe_slug`: KubeSpawner 7's scheme (`kubespawner.slugs.safe_slug`): a name that is already a
  valid DNS label is kept; anything else is lower-cased, runs of other characters become one `-`,
  and `---<8 hex of sha256>` is appended, so two different inputs never share a slug.
- `escape_name` / `token_secret_name`: the older escapism scheme (`a.b@x.org` -> `a-2eb-40x-2eorg`),
  owned by `tokens.py` and re-exported here so there is one place to look for names.
- Child objects are named after the pod as the API server stored it (`<pod name>-mcp`), never
  after a recomputed pod name: KubeSpawner's pod name template is configurable.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from typing import Any

from mcp_operator.tokens import escape_name, token_secret_name

__all__ = ["child_name", "escape_name", "label_value", "safe_slug", "token_secret_name"]

MAX_DNS_LABEL = 63
CHILD_SUFFIX = "-mcp"
_HASH_LENGTH = 8
_LOWER = tuple(string.ascii_lowercase)
_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf8")).hexdigest()[:_HASH_LENGTH]


def _safe_part(name: str, max_length: int) -> str:
    """Lower-case letters, digits and single hyphens; starts with a letter; never empty."""
    part = _NOT_ALNUM.sub("-", name.lower()).lstrip("-")[:max_length].rstrip("-")
    if part and not part.startswith(_LOWER):
        part = "x-" + part[: max_length - 2]
    return part or "x"


def safe_slug(name: str, max_length: int = MAX_DNS_LABEL) -> str:
    """A DNS label for any string; unique per input (KubeSpawner 7 compatible for max_length 63)."""
    # `--` is reserved for joined names (`user--server`), `---` for the hash: never pass them through.
    if "--" not in name and len(name) <= max_length and _DNS_LABEL.match(name):
        return name
    budget = min(max_length, 32) - (_HASH_LENGTH + 3)
    return f"{_safe_part(name, budget)}---{_short_hash(name)}"


def _fit(name: str, limit: int = MAX_DNS_LABEL) -> str:
    """`name` itself when short enough, else its head plus a hash of the whole (still unique)."""
    if len(name) <= limit:
        return name
    head = name[: limit - _HASH_LENGTH - 1].rstrip("-.")
    return f"{head}-{_short_hash(name)}"


def child_name(pod: Mapping[str, Any]) -> str:
    """Service / Ingress / NetworkPolicy name of an injected pod: `<pod name>-mcp`, within 63 chars."""
    return _fit(pod["metadata"]["name"] + CHILD_SUFFIX)


def label_value(value: str) -> str:
    """A label value (63 chars max) standing for `value`; pod names can be longer than that."""
    return _fit(value)
