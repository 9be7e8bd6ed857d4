"""Write a TemplateSet to a directory (YAML or JSON) with DEPLOY.md: what to deploy, where, in which order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from service.aws_template.build import TemplateSet

CAPS = "--capabilities CAPABILITY_NAMED_IAM"


def dump(template: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(template, indent=2) + "\n"
    return str(yaml.safe_dump(template, sort_keys=False, width=120, default_flow_style=False))


def deploy_plan(ts: TemplateSet, out: Path, ext: str) -> str:
    def path(name: str) -> str:
        return str(out / f"{name}.{ext}")

    lines = ["# Deploying Keyturn's AWS side", "",
             "Run each step with credentials of the account named (e.g. `--profile`). IAM is global: one region.", "",
             f"1. Keyturn's role, in Keyturn's account {ts.keyturn_account} (first: the manager roles name it, "
             "and IAM refuses a trust policy naming a missing principal):", "",
             f"       aws cloudformation deploy --stack-name keyturn-service --template-file {path('keyturn-service')} "
             f"{CAPS} \\",
             "         --parameter-overrides TrustedService=ecs-tasks.amazonaws.com   # or TrustedPrincipalArn=<ARN>",
             ""]
    step = 2
    if ts.managed_accounts:
        accounts = ",".join(ts.managed_accounts)
        lines += [f"{step}. The manager role in every managed account ({', '.join(ts.managed_accounts)}), one "
                  "template: as a service-managed StackSet from the organisation's management account",
                  "", f"       aws cloudformation create-stack-set --stack-set-name keyturn-manager "
                  f"--template-body file://{path('keyturn-manager')} {CAPS} \\",
                  "         --permission-model SERVICE_MANAGED --auto-deployment Enabled=true,"
                  "RetainStacksOnAccountRemoval=false \\",
                  f"         --parameters ParameterKey=KeyturnAccountId,ParameterValue={ts.keyturn_account}",
                  "       aws cloudformation create-stack-instances --stack-set-name keyturn-manager "
                  "--regions us-east-1 \\",
                  f"         --deployment-targets OrganizationalUnitIds=<ou-…>,Accounts={accounts},"
                  "AccountFilterType=INTERSECTION", ""]
        if ts.inline_users_accounts:
            lines += [f"   Accounts {', '.join(ts.inline_users_accounts)} need InlinePolicyOnUsers=true (add "
                      "`--parameter-overrides ParameterKey=InlinePolicyOnUsers,ParameterValue=true` to their "
                      "instances).", ""]
        lines += ["   Without an organisation, or for the management account itself (a StackSet never deploys "
                  "there), deploy it as a stack in each account:", "",
                  f"       aws cloudformation deploy --stack-name keyturn-manager --template-file "
                  f"{path('keyturn-manager')} {CAPS} \\",
                  f"         --parameter-overrides KeyturnAccountId={ts.keyturn_account}", ""]
        step += 1
    targets = sorted(n for n in ts.templates if n.startswith("account-"))
    if targets:
        lines += [f"{step}. The target roles and groups, one stack per account (any order):", ""]
        for name in targets:
            lines += [f"       # account {name.removeprefix('account-')}",
                      f"       aws cloudformation deploy --stack-name keyturn-targets --template-file {path(name)} "
                      f"{CAPS}", ""]
        lines += ["   Parameters: `Role<Id>PolicyArns` (what a person granted the role may do: managed policy ARNs, "
                  "none by default), `Role<Id>MaxSessionDuration` (the catalogue's max_duration, at least 3600), "
                  "`OperatorPrincipalArn` (who else may assume the roles; default the account's root).", ""]
        step += 1
    for note in ts.notes:
        lines += [f"{step}. Then {note}.", ""]
        step += 1
    lines += [f"{step}. Check with Keyturn's credentials: `keyturn doctor`.", ""]
    return "\n".join(lines)


def write_templates(ts: TemplateSet, out: Path, fmt: str = "yaml") -> list[Path]:
    ext = "json" if fmt == "json" else "yaml"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, template in ts.templates.items():
        target = out / f"{name}.{ext}"
        target.write_text(dump(template, fmt))
        written.append(target)
    plan = out / "DEPLOY.md"
    plan.write_text(deploy_plan(ts, out, ext))
    written.append(plan)
    return written
