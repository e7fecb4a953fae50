"""Write the numbers a run produced into the docs (README's headline, docs/06, docs/05, workshop timings).

python scripts/update_docs.py --results outputs/tiny/experiment    # after `make table`
python scripts/update_docs.py --pretrain_selected outputs/tiny/pretrain_selected   # after `make pretrain_selected`
python scripts/update_docs.py --report outputs/tiny/report.md   # after `make report`
python scripts/update_docs.py --timings outputs/notebooks/timings.json   # after `make notebooks`
python scripts/update_docs.py --predictor outputs/tiny/benchmarks/predictor.json   # after benchmarks/bench_predictor.py
python scripts/update_docs.py --influence outputs/tiny/influence   # after `make demo` (and `make exact`)
python scripts/update_docs.py --influence_bench outputs/tiny/benchmarks/influence.json   # after benchmarks/bench_influence.py
python scripts/update_docs.py --all outputs/tiny   # every block whose run's outputs exist (`make docs`)
"""

import argparse

from codesift.cli import report_errors
from codesift.reporting import (
    update_all_docs,
    update_influence_bench_docs,
    update_influence_docs,
    update_predictor_docs,
    update_pretrain_selected_docs,
    update_report_docs,
    update_results_docs,
    update_timings_docs,
)
from codesift.utils import project_root

if __name__ == "__main__":
    with report_errors():
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--results", help="a finished experiment folder (results.json, .md, .png)")
        parser.add_argument("--pretrain_selected", help="a finished pretrain_selected folder")
        parser.add_argument("--report", help="a findings report (report.md) written by scripts/analyze.py")
        parser.add_argument("--timings", help="timings.json written by scripts/run_notebooks.py")
        parser.add_argument("--predictor", help="the JSON benchmarks/bench_predictor.py writes")
        parser.add_argument("--influence", help="stage 03's output folder (fast scores, exact ones if any)")
        parser.add_argument("--influence_bench", help="the JSON benchmarks/bench_influence.py writes")
        parser.add_argument("--all", help="a recipe's outputs folder: every block whose outputs exist")
        args = parser.parse_args()
        root = project_root()
        if args.all:
            for path in update_all_docs(args.all, root):
                print(path)
        if args.results:
            for path in update_results_docs(args.results, root):
                print(f"wrote {path}")
        if args.pretrain_selected:
            for path in update_pretrain_selected_docs(args.pretrain_selected, root):
                print(f"wrote {path}")
        if args.report:
            print(f"wrote {update_report_docs(args.report, root)}")
        if args.timings:
            print(f"wrote {update_timings_docs(args.timings, root)}")
        if args.influence:
            print(f"wrote {update_influence_docs(args.influence, root)}")
        if args.influence_bench:
            print(f"wrote {update_influence_bench_docs(args.influence_bench, root)}")
        if args.predictor:
            print(f"wrote {update_predictor_docs(args.predictor, root)}")
