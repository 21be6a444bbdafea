"""KubeSpawner-compatible names. The expected slugs are KubeSpawner 7's own test vectors
(kubespawner/tests/test_slugs.py), so a pod name computed there and here agree."""

from __future__ import annotations

import pytest
from mcp_operator.names import child_name, label_value, safe_slug, token_secret_name


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("jupyter-alex", "jupyter-alex"),
        ("jupyter-Alex", "jupyter-alex---3a1c285c"),
        ("jupyter-üni", "jupyter-ni---a5aaf5dd"),
        ("endswith-", "endswith---165f1166"),
        ("user@email.com", "user-email-com---0925f997"),
        ("user-_@_emailß.com", "user-email-com---7e3a7efd"),
        ("has.dot", "has-dot---03e27fdf"),
        ("z9", "z9"),
        ("9z9", "x-9z9---224de202"),
        ("-start", "start---f587e2dc"),
        ("üser", "ser---73506260"),
        ("username--servername", "username-servername---d957f1de"),
        ("x" * 63, "x" * 63),
    ],
)
def test_safe_slug_matches_kubespawner(name: str, slug: str) -> None:
    assert safe_slug(name) == slug


def test_slugs_never_collide_and_fit() -> None:
    names = ["Alice", "alice.", "alice@", "ALICE", "a" * 64, "a" * 65, "a.b@x.org", "a-b@x.org"]
    slugs = [safe_slug(n) for n in names]
    assert len(set(slugs)) == len(names)
    assert all(len(s) <= 63 for s in slugs)


def test_child_name_is_the_stored_pod_name_plus_suffix() -> None:
    assert child_name({"metadata": {"name": "jupyter-a-2eb-40x-2eorg"}}) == "jupyter-a-2eb-40x-2eorg-mcp"
    long_a = {"metadata": {"name": "jupyter-" + "a" * 60}}
    long_b = {"metadata": {"name": "jupyter-" + "a" * 59 + "b"}}
    assert len(child_name(long_a)) == 63 and child_name(long_a) != child_name(long_b)
    assert child_name(long_a)[-1].isalnum()


def test_label_value_fits() -> None:
    assert label_value("short") == "short"
    assert len(label_value("p" * 100)) == 63


def test_token_secret_names_are_distinct_per_server() -> None:
    assert token_secret_name("alice", "") == "mcp-token-alice"
    assert token_secret_name("a.b@x.org", "") == "mcp-token-a-2eb-40x-2eorg"
    assert token_secret_name("bob", "lab") != token_secret_name("bob-lab", "")
