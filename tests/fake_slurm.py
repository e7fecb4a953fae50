"""A stand-in Slurm for tests: `sbatch` runs the submitted script at once, once per array index
(SLURM_ARRAY_TASK_ID set, as Slurm sets it), `srun` runs its command, and `scontrol show hostnames`
names the one node. Jobs run in submission
order, which is dependency order for datatrove (it submits a job's dependency first), so a chain of
dependent job arrays runs as Slurm would run it on one node; every submission is logged (its
arguments and script) so a test can check what was asked for."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

SBATCH = """#!{python}
import json, os, re, subprocess, sys
from pathlib import Path
log = Path(os.environ["FAKE_SLURM_LOG"])
args, script = sys.argv[1:-1], Path(sys.argv[-1]).read_text()
jobs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
job_id = len(jobs) + 1
env = dict(os.environ)
for arg in args:
    if arg.startswith("--export=ALL,"):
        env.update(kv.split("=", 1) for kv in arg.removeprefix("--export=ALL,").split(","))
found = re.search(r"^#SBATCH --array=(\\d+)-(\\d+)", script, re.M)
indices = range(int(found[1]), int(found[2]) + 1) if found else [0]
with log.open("a") as sink:
    sink.write(json.dumps({{"job_id": job_id, "args": args, "script": script}}) + "\\n")
path = Path(sys.argv[-1]).with_suffix(".run.sh")
path.write_text(script)
for index in indices:
    task = {{**env, "SLURM_ARRAY_TASK_ID": str(index), "SLURM_JOB_ID": str(job_id), "SLURM_NODELIST": "localhost"}}
    done = subprocess.run(["bash", str(path)], env=task, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"job {{job_id}} task {{index}} failed: {{done.stderr[-2000:]}}")
print(f"Submitted batch job {{job_id}}")
"""

SRUN = """#!{python}
import os, sys
args, command = sys.argv[1:], []
while args:
    arg = args.pop(0)
    if arg == "-n":
        args.pop(0)
    elif not arg.startswith("-"):
        command = [arg, *args]
        break
os.execvp(command[0], command)
"""

SCONTROL = """#!{python}
import sys
if sys.argv[1:3] == ["show", "hostnames"]:
    print(sys.argv[3])
"""


def install_fake_slurm(folder: Path) -> tuple[Path, Path]:
    """(bin folder to put first on PATH, the submissions log) with `sbatch`, `srun` and `scontrol`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("sbatch", SBATCH), ("srun", SRUN), ("scontrol", SCONTROL)):
        path = folder / name
        path.write_text(text.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder, folder / "submissions.jsonl"


def submissions(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def slurm_environment(bin_folder: Path, log: Path) -> dict:
    """PATH with the stand-in first and the interpreter's own scripts (datatrove's
    launch_pickled_pipeline, merge_stats) after it."""
    path = f"{bin_folder}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {"PATH": path, "FAKE_SLURM_LOG": str(log)}
