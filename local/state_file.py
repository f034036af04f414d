"""The local stack's state file, read by the `kefu` CLI to find the running stack.

Path: $KEFU_STATE_FILE, else .kefu/local-stack.json under the repository root. Written once the
stack serves ({url, aws_endpoint, region, stack_name, resources, wecom_api_base, corp_id, pid};
no secrets), removed on a clean stop. The default path belongs to one stack at a time: while the
stack that wrote it is alive, another stack (a test's, say) leaves it alone - give that one its
own KEFU_STATE_FILE.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV = "KEFU_STATE_FILE"
DEFAULT = Path(".kefu") / "local-stack.json"


def path_for(env: Mapping[str, str], root: Path) -> tuple[Path, bool]:
    """(the path, whether it was given explicitly)."""
    explicit = env.get(ENV)
    return (Path(explicit), True) if explicit else (root / DEFAULT, False)


def _owner(path: Path) -> int | None:
    try:
        pid = int(json.loads(path.read_text(encoding="utf-8")).get("pid"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return pid


def _alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def write(path: Path, state: Mapping[str, Any], explicit: bool) -> bool:
    """Write the state (atomically); False when the default path belongs to another live stack."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(dict(state), indent=2) + "\n", encoding="utf-8")
    try:
        if explicit:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)  # only if no state file exists (atomic)
            return True
        except FileExistsError:
            owner = _owner(path)
            if owner != os.getpid() and _alive(owner):
                return False
            os.replace(temp, path)
            return True
    finally:
        temp.unlink(missing_ok=True)


def remove(path: Path) -> None:
    """Remove the state file if this process wrote it."""
    if _owner(path) == os.getpid():
        path.unlink(missing_ok=True)


def publish(stack: Any, root: Path) -> Path | None:
    """Write a running LocalStack's state; the path written, or None (the reason is printed)."""
    path, explicit = path_for(stack.env, root)
    template = stack.template
    state = {
        "url": stack.url,
        "aws_endpoint": stack.aws_endpoint,
        "region": stack.env.get("AWS_DEFAULT_REGION", "us-east-1"),
        "stack_name": stack.env.get("KEFU_STACK_NAME", "kefu-local"),
        "resources": {**template.physical, "SecretsPrefix": template.parameters["SecretsPrefix"]},
        "wecom_api_base": stack.wecom_base,
        "corp_id": template.parameters.get("WeComCorpId", ""),
        "suite_id": template.parameters.get("SuiteId", ""),
        "pid": os.getpid(),
    }
    try:
        if write(path, state, explicit):
            print(f"kefu local stack: state for the kefu CLI in {path}", flush=True)
            return path
    except OSError as exc:
        print(f"kefu local stack: could not write {path}: {exc}", flush=True)
        return None
    print(f"kefu local stack: {path} belongs to another running stack; set {ENV} for this one's", flush=True)
    return None
