# Copyright (c) virtops.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One migration by the module or by ``virsh migrate``, as a benchmark sample (a flat dict).

Every sample holds ``tool``, ``source``, ``dest``, ``ok``, ``cli_s`` (the controller's wall time:
the ``ansible`` CLI, or ``ssh`` + virsh), ``host_s`` (time on the source host: the module's own
``timings.total``, or the virsh process), ``job_s`` and ``downtime_ms`` (libvirt's completed job
statistics) and ``data_mib`` (data libvirt sent).
"""

from __future__ import annotations

import shlex
from typing import Any

from labaccess import BenchLab, HostRun, parse_virsh_fields, virsh_number

MIB = 1024 * 1024

# The module's VIR_MIGRATE_* flags and the virsh migrate option that sets each.
VIRSH_OPTION_FOR_FLAG = {
    "VIR_MIGRATE_LIVE": "--live",
    "VIR_MIGRATE_OFFLINE": "--offline",
    "VIR_MIGRATE_PEER2PEER": "--p2p",
    "VIR_MIGRATE_TUNNELLED": "--tunnelled",
    "VIR_MIGRATE_PERSIST_DEST": "--persistent",
    "VIR_MIGRATE_UNDEFINE_SOURCE": "--undefinesource",
    "VIR_MIGRATE_PAUSED": "--suspend",
    "VIR_MIGRATE_NON_SHARED_DISK": "--copy-storage-all",
    "VIR_MIGRATE_NON_SHARED_INC": "--copy-storage-inc",
    "VIR_MIGRATE_CHANGE_PROTECTION": "--change-protection",
    "VIR_MIGRATE_UNSAFE": "--unsafe",
    "VIR_MIGRATE_COMPRESSED": "--compressed",
    "VIR_MIGRATE_ABORT_ON_ERROR": "--abort-on-error",
    "VIR_MIGRATE_AUTO_CONVERGE": "--auto-converge",
    "VIR_MIGRATE_POSTCOPY": "--postcopy",
    "VIR_MIGRATE_TLS": "--tls",
    "VIR_MIGRATE_PARALLEL": "--parallel",
}
# What the module sends with its defaults (live, p2p, persistent, undefine_source; no tls, no tunnel).
DEFAULT_MODULE_FLAGS = ["VIR_MIGRATE_LIVE", "VIR_MIGRATE_PEER2PEER", "VIR_MIGRATE_PERSIST_DEST",
                        "VIR_MIGRATE_UNDEFINE_SOURCE"]


def virsh_options(flags: list[str]) -> list[str]:
    """The virsh migrate options for the module's flag names; unknown flags raise (never silently dropped)."""
    unknown = [flag for flag in flags if flag not in VIRSH_OPTION_FOR_FLAG]
    if unknown:
        raise ValueError(f"no virsh option for {', '.join(unknown)}")
    return [VIRSH_OPTION_FOR_FLAG[flag] for flag in flags]


def virsh_migrate_command(name: str, dest_uri: str, flags: list[str], bandwidth: int | None = None) -> str:
    words = ["virsh", "migrate", *virsh_options(flags)]
    if bandwidth:
        words += ["--bandwidth", str(bandwidth)]
    return " ".join([*words, shlex.quote(name), shlex.quote(dest_uri)])


def seconds(milliseconds: float | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000.0


def module_sample(name: str, source: str, dest: str, cli_s: float, result: dict[str, Any]) -> dict[str, Any]:
    """A sample from the migrate module's result."""
    stats = result.get("stats") or {}
    timings = result.get("timings") or {}
    processed = stats.get("data_processed")
    return {
        "tool": "module", "guest": name, "source": source, "dest": dest,
        "ok": not result.get("failed") and stats.get("job_type") == "completed",
        "changed": result.get("changed"),
        "cli_s": round(cli_s, 3),
        "host_s": timings.get("total"),
        "job_s": seconds(stats.get("time_elapsed")),
        "downtime_ms": stats.get("downtime"),
        "data_mib": None if processed is None else round(processed / MIB, 1),
        "phases": timings,
        "flags": result.get("flags") or [],
        "policy_actions": result.get("policy_actions") or [],
        "stats": stats,
        "last_job_stats": result.get("last_job_stats") or {},
        "msg": result.get("msg") if result.get("failed") else None,
    }


def run_module(lab: BenchLab, name: str, source: str, dest: str, options: dict[str, Any] | None = None,
               timeout: float = 900) -> dict[str, Any]:
    args = {"name": name, "dest_uri": lab.dest_uri(dest), **(options or {})}
    cli_s, result = lab.module(source, "migrate", args, timeout=timeout)
    return module_sample(name, source, dest, cli_s, result)


def planned_flags(lab: BenchLab, name: str, source: str, dest: str, options: dict[str, Any] | None = None) -> list[str]:
    """The flags the module would use (a check-mode run), so virsh gets exactly the same."""
    args = {"name": name, "dest_uri": lab.dest_uri(dest), **(options or {})}
    result = lab.client.module(source, "migrate", args, check=True)
    flags = result.get("flags")
    if result.get("failed") or not flags:
        raise RuntimeError(f"check-mode migrate of {name} gave no flags: {result.get('msg')}")
    return list(flags)


def virsh_sample(name: str, source: str, dest: str, run: HostRun, job: dict[str, float | None],
                 command: str) -> dict[str, Any]:
    return {
        "tool": "virsh", "guest": name, "source": source, "dest": dest,
        "ok": run.rc == 0,
        "cli_s": round(run.wall_s, 3),
        "host_s": None if run.host_s is None else round(run.host_s, 3),
        "job_s": seconds(job.get("time_elapsed_ms")),
        "downtime_ms": job.get("downtime_ms"),
        "data_mib": job.get("data_processed_mib"),
        "command": command,
        "msg": None if run.rc == 0 else (run.stderr or run.stdout)[-500:],
    }


def run_virsh(lab: BenchLab, name: str, source: str, dest: str, flags: list[str],
              bandwidth: int | None = None) -> dict[str, Any]:
    """``virsh migrate`` on the source over SSH; downtime from the destination's completed job."""
    command = virsh_migrate_command(name, lab.dest_uri(dest), flags, bandwidth)
    run = lab.run_timed(source, command)
    job = lab.completed_job(dest, name) if run.rc == 0 else {}
    return virsh_sample(name, source, dest, run, job, command)


def bounded_virsh_script(command: str, name: str, limit_s: float) -> str:
    """A script running ``command`` in the background, aborting the job once ``limit_s`` has passed."""
    quoted = shlex.quote(name)
    return (f"{command} & pid=$!; end=$(( $(date +%s) + {int(limit_s)} )); "
            "while kill -0 $pid 2>/dev/null && [ $(date +%s) -lt $end ]; do sleep 0.5; done; "
            f"if kill -0 $pid 2>/dev/null; then echo BENCH-JOBINFO-START; virsh domjobinfo {quoted}; "
            f"echo BENCH-JOBINFO-END; virsh domjobabort {quoted}; echo BENCH-ABORTED; fi; wait $pid")


def job_at_abort(stdout: str) -> dict[str, float | None]:
    """The live job statistics printed just before the abort (data remaining, dirty rate, iteration)."""
    start, end = stdout.find("BENCH-JOBINFO-START"), stdout.find("BENCH-JOBINFO-END")
    if start < 0 or end < 0:
        return {}
    fields = parse_virsh_fields(stdout[start:end])
    return {
        "time_elapsed_ms": virsh_number(fields.get("Time elapsed")),
        "data_remaining_mib": virsh_number(fields.get("Data remaining")),
        "data_processed_mib": virsh_number(fields.get("Data processed")),
        "memory_iterations": virsh_number(fields.get("Iteration")),
        "dirty_rate_pages_s": virsh_number(fields.get("Dirty rate")),
        "expected_downtime_ms": virsh_number(fields.get("Expected downtime")),
    }


def run_virsh_bounded(lab: BenchLab, name: str, source: str, dest: str, flags: list[str], bandwidth: int,
                      limit_s: float) -> dict[str, Any]:
    """``virsh migrate`` with a wall-time bound: aborted with ``virsh domjobabort`` when it runs longer."""
    command = virsh_migrate_command(name, lab.dest_uri(dest), flags, bandwidth)
    run = lab.run_timed(source, bounded_virsh_script(command, name, limit_s), timeout=limit_s + 300)
    aborted = "BENCH-ABORTED" in run.stdout
    job = lab.completed_job(dest, name) if run.rc == 0 and not aborted else {}
    sample = virsh_sample(name, source, dest, run, job, command)
    sample.update(ok=run.rc == 0 and not aborted, aborted=aborted, limit_s=limit_s,
                  at_abort=job_at_abort(run.stdout) if aborted else {})
    return sample
