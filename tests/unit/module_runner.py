"""Run a module's main() the way Ansible does: arguments in, exit code and JSON result out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args


def run_module_main(main: Callable[[], None], args: dict[str, Any], capsys: Any,
                    check_mode: bool = False, diff: bool = False) -> tuple[int, dict[str, Any]]:
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    # A module runs in a process of its own on the managed host: warnings and deprecations are
    # collected into its result. Once a test in this process has imported controller code (the
    # filter plugins import ansible.errors), ansible-core would send them to the controller's
    # display instead; run main() as the managed host would.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_internal, "is_controller", False)
        with patch_module_args(args), pytest.raises(SystemExit) as caught:
            main()
    return caught.value.code, json.loads(capsys.readouterr().out)
