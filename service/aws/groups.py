"""IAM group membership: the members of one group."""

from __future__ import annotations

from typing import Any

from service.aws.errors import TargetGone, is_not_found

MAX_GROUPS_PER_USER = 10


class GroupMembers:
    def __init__(self, iam: Any, group: str):
        self.iam, self.group = iam, group

    def read(self) -> set[str]:
        members: set[str] = set()
        try:
            for page in self.iam.get_paginator("get_group").paginate(GroupName=self.group):
                members.update(u["UserName"] for u in page.get("Users", []))
        except Exception as exc:
            if is_not_found(exc):
                raise TargetGone(f"group {self.group} does not exist") from exc
            raise
        return members

    def limit_problem(self, user: str) -> str | None:
        """Why `user` cannot join one more group, or None."""
        try:
            groups = [g["GroupName"] for g in self.iam.list_groups_for_user(UserName=user).get("Groups", [])]
        except Exception as exc:
            if is_not_found(exc):
                return f"user {user} does not exist"
            raise
        if self.group not in groups and len(groups) >= MAX_GROUPS_PER_USER:
            return f"user {user} is already in {len(groups)} groups; IAM allows {MAX_GROUPS_PER_USER}"
        return None

    def add(self, user: str) -> None:
        self.iam.add_user_to_group(GroupName=self.group, UserName=user)

    def remove(self, user: str) -> None:
        try:
            self.iam.remove_user_from_group(GroupName=self.group, UserName=user)
        except Exception as exc:
            if not is_not_found(exc):
                raise
            # already gone counts as done
