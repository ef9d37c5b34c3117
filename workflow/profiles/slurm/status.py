#!/usr/bin/env python3
"""Status of one SLURM job for Snakemake's generic cluster executor: prints running,
success or failed. Asks ``scontrol`` (slurmctld keeps finished jobs for MinJobAge
seconds), then ``sacct`` where the cluster keeps accounting."""

import subprocess
import sys

RUNNING = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
           "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}


def state(job_id: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                             timeout=30).stdout
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True,
                             text=True, timeout=30).stdout.split()
        if out:
            return out[0].split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return "UNKNOWN"


if __name__ == "__main__":
    s = state(sys.argv[1].split(";")[0])
    print("running" if s in RUNNING else "success" if s == "COMPLETED" else "failed")
