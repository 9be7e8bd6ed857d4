"""A principal IAM refuses costs only its own grant.

IAM resolves every principal of a trust policy when it is written and refuses the whole document if one
does not exist (`MalformedPolicyDocument: Invalid principal in policy: "AWS":"<arn>"`): a user deleted or
mistyped since its grant was approved. Keyturn rewrites the whole document, so without this one such
grant would block every write to that role, other people's revocations included.

`write_accepted` writes the document; when IAM refuses a principal, it drops the owned statements that
name it (IAM names the ARN in its message; without one, the statements are found by bisection: writing
the foreign statements, the owned ones IAM already holds unchanged, and half of the others at a time) and
writes the rest. A foreign statement naming the principal is not Keyturn's to fix: the error is raised as
it came. Trial writes never hold a statement that is not in the desired document, so nothing is ever
granted that the database does not want.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from service.aws.documents import PolicyDocument
from service.aws.errors import error_code
from service.core.policy import Document, Statement, canonical, rebuild, split

# IAM: Invalid principal in policy: "AWS":"arn:aws:iam::111111111111:user/ghost"
INVALID_PRINCIPAL = re.compile(r'Invalid principal in policy:?\s*(?:"AWS"\s*:\s*"(?P<arn>[^"]+)")?')


def refused_principal(exc: BaseException) -> tuple[bool, str | None]:
    """(whether `exc` is IAM refusing a principal, the ARN it names if any)."""
    if error_code(exc) not in ("MalformedPolicyDocument", "MalformedPolicyDocumentException"):
        return False, None
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")) or str(exc)
    found = INVALID_PRINCIPAL.search(message)
    return (found is not None, found.group("arn") if found else None)


def principals_of(statement: Statement) -> list[str]:
    principal = statement.get("Principal")
    values = principal.get("AWS") if isinstance(principal, dict) else principal
    return [values] if isinstance(values, str) else [str(v) for v in values or []]


def reason_for(arn: str | None) -> str:
    return f"principal {arn or '(not named by IAM)'} is not accepted by IAM (Invalid principal)"


def write_accepted(
    doc: PolicyDocument, live: Document | None, new: Document, owned: list[Statement]
) -> tuple[Document, list[Statement], dict[str, str]]:
    """Write `new` (= foreign statements of `live` + `owned`), dropping owned statements whose principal IAM
    refuses. Returns the document written, the owned statements in it, and Sid -> reason of those dropped.
    Raises IAM's error when a foreign statement is the cause, or when nothing writable is left."""
    refused: dict[str, str] = {}
    kept = list(owned)
    for _ in range(len(owned) + 1):
        candidate = rebuild(live, kept)
        if refused and canonical(candidate) == canonical(live):
            return candidate, kept, refused  # what is left is what IAM holds: nothing to write
        try:
            doc.write(candidate)
            return candidate, kept, refused
        except Exception as exc:
            is_refusal, arn = refused_principal(exc)
            if not is_refusal:
                raise
            bad = _naming(arn, live, kept) if arn else None
            if bad is None:
                bad, arn = _bisect(doc, live, kept), None
            if not bad or doc.limit_problem(rebuild(live, [s for s in kept if s["Sid"] not in bad])):
                raise
            for s in kept:
                if s["Sid"] in bad:
                    refused[s["Sid"]] = reason_for(arn or _first(principals_of(s)))
            kept = [s for s in kept if s["Sid"] not in bad]
    raise RuntimeError("unreachable: every owned statement was dropped and IAM still refuses")


def _naming(arn: str, live: Document | None, kept: list[Statement]) -> set[str] | None:
    """The Sids of owned statements naming `arn`: an empty set when a foreign statement names it (not ours
    to fix), None when no statement does (IAM spelled it differently: then bisect)."""
    if any(arn in principals_of(s) for s in split(live)[0]):
        return set()
    mine = {s["Sid"] for s in kept if arn in principals_of(s)}
    return mine or None


def _bisect(doc: PolicyDocument, live: Document | None, kept: list[Statement]) -> set[str]:
    """Find the owned statements IAM refuses by trying documents; an empty set if the foreign statements
    (or the owned ones IAM already holds) are refused on their own."""
    held = {canonical({"Statement": [s]}) for s in split(live)[1]}
    good = [s for s in kept if canonical({"Statement": [s]}) in held]
    unknown = [s for s in kept if canonical({"Statement": [s]}) not in held]
    base = rebuild(live, good)
    if base.get("Statement") and not _accepted(doc, base):
        return set()
    bad: set[str] = set()
    pending = [unknown]
    while pending:
        part = pending.pop()
        if not part:
            continue
        if _accepted(doc, rebuild(live, good + part)):
            good += part
        elif len(part) == 1:
            bad.add(part[0]["Sid"])
        else:
            half = len(part) // 2
            pending += [part[half:], part[:half]]
    return bad


def _accepted(doc: PolicyDocument, document: Document) -> bool:
    try:
        doc.write(document)
    except Exception as exc:
        if refused_principal(exc)[0]:
            return False
        raise
    return True


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def refused_grants(refused: Mapping[str, str], sid_to_key: Mapping[str, str],
                   grants: Iterable[Any]) -> dict[int, str]:
    """Grant id -> reason for every grant (anything with `.id` and `.lease_key`) whose lease's statement was
    dropped: several grants can share one lease key, and each of them fails."""
    keys = {sid_to_key[sid]: reason for sid, reason in refused.items() if sid in sid_to_key}
    return {g.id: keys[g.lease_key] for g in grants if g.lease_key in keys}
