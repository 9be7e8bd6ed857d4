"""Keyturn's own IAM documents, loaded from config/iam (the single source), adapted for a template.

Nothing here copies a policy: each document is read from its JSON file when a template is built. The only
changes made are the ones the files document as placeholders: the name of Keyturn's own role (when the
operator picks another than `keyturn-service`) and, in the manager trust policy, Keyturn's account.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

IAM_DIR = Path(__file__).resolve().parents[2] / "config" / "iam"
DEFAULT_KEYTURN_ROLE = "keyturn-service"
MANAGER_ROLE = "keyturn-manager"
KEYTURN_PATH = "/keyturn/"
PLACEHOLDER_ACCOUNT = "123456789012"  # manager-trust-policy.json's stand-in for Keyturn's account
KEYTURN_POLICY = "keyturn-policy.json"
MANAGER_POLICY = "manager-role-policy.json"
MANAGER_TRUST = "manager-trust-policy.json"
INLINE_USERS_POLICY = "inline-users-policy.json"
IDENTITY_CENTER_POLICY = "identity-center-policy.json"


class TemplateError(Exception):
    """The catalogue asks for something the templates (or Keyturn's policies) cannot give; every problem listed."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def load(name: str, directory: Path | None = None) -> dict[str, Any]:
    path = (directory or IAM_DIR) / name
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise TemplateError([f"{path} is missing: run keyturn aws template from a Keyturn checkout "
                             "(the policies live in config/iam)"]) from exc


def map_strings(value: Any, fn: Callable[[str], Any]) -> Any:
    """`value` with every string replaced by fn(string), recursively (keys untouched)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_strings(v, fn) for k, v in value.items()}
    return value


def _own_role(role_name: str) -> Callable[[str], str]:
    old, new = f":role/keyturn/{DEFAULT_KEYTURN_ROLE}", f":role/keyturn/{role_name}"
    return lambda s: s.replace(old, new)


def keyturn_document(name: str, role_name: str, directory: Path | None = None) -> dict[str, Any]:
    """A policy file with Keyturn's own role called `role_name` (its Deny on changing itself follows)."""
    return dict(map_strings(load(name, directory), _own_role(role_name)))


def manager_trust(role_name: str, directory: Path | None = None) -> dict[str, Any]:
    """manager-trust-policy.json with Keyturn's role in the account given by the KeyturnAccountId parameter."""
    placeholder = f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/keyturn/{DEFAULT_KEYTURN_ROLE}"
    found: list[str] = []

    def swap(s: str) -> Any:
        if s != placeholder:
            return s
        found.append(s)
        return {"Fn::Sub": "arn:${AWS::Partition}:iam::${KeyturnAccountId}:role/keyturn/" + role_name}

    doc = dict(map_strings(load(MANAGER_TRUST, directory), swap))
    if not found:
        raise TemplateError([f"{MANAGER_TRUST} no longer names {placeholder}: the template cannot put Keyturn's "
                             "account into it"])
    return doc


def compact_size(doc: Any) -> int:
    """Characters IAM counts for a policy: JSON without white space."""
    return len(json.dumps(doc, separators=(",", ":")))
