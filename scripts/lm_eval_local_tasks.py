"""Write lm-eval task files that read the paper's zero-shot tasks from local JSONL files, offline.

    python scripts/lm_eval_local_tasks.py --data DATA_DIR --out TASKS_DIR

DATA_DIR holds <task>.jsonl for any of arc_easy, arc_challenge, piqa, winogrande, hellaswag,
lambada_openai: the split lm-eval evaluates, with the Hugging Face dataset's own columns
(docs/lm_eval.md shows how to make them). Then, with no network:

    mq-deploy lm-eval --model mq-deploy --model_args path=DIR --include_path TASKS_DIR \\
        --tasks arc_easy,arc_challenge,piqa,winogrande,hellaswag,lambada_openai
"""

from __future__ import annotations

import argparse
import sys

from mq_deploy.errors import MQDeployError
from mq_deploy.lm_eval.tasks import write_local_tasks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="directory of <task>.jsonl files")
    parser.add_argument("--out", required=True, help="directory for the task YAMLs (give it to --include_path)")
    parser.add_argument("--force", action="store_true",
                        help="replace task files this script wrote before (never anything else)")
    args = parser.parse_args(argv)
    try:
        written = write_local_tasks(args.data, args.out, force=args.force)
    except MQDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
