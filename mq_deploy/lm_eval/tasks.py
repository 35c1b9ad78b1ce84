"""The MambaQuant paper's zero-shot tasks, and lm-eval task files that read them from local JSONL.

The paper (arXiv 2501.13484) reports, for Mamba LLMs, accuracy on ARC-Easy (acc), ARC-Challenge
(acc_norm), PIQA (acc), WinoGrande (acc) and HellaSwag (acc_norm), and their average; the official
scripts evaluate exactly these five. LAMBADA (acc) is listed beside them, as in the Mamba paper's
zero-shot table, but is not part of the average (docs/lm_eval.md).

`write_local_tasks` writes, per task with a `<task>.jsonl` in a data directory, a YAML that includes
lm-eval's own task file and replaces only where the documents come from (the JSONL, as the split
lm-eval evaluates): prompts, choices and metrics stay lm-eval's. The YAML keeps the task's name, so
with `--include_path` the same `--tasks arc_easy,...` command runs offline on the local copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..atomic_dir import atomic_files
from ..errors import MQDeployError
from ..outputs import check_output_files


@dataclass(frozen=True)
class PaperTask:
    name: str              # lm-eval task name
    task_file: str         # lm-eval's YAML, relative to lm_eval/tasks/
    split: str             # the split lm-eval evaluates: "test" or "validation"
    metric: str            # the metric the paper reports
    in_average: bool = True


# lm-eval reads these from the hub: allenai/ai2_arc, baber/piqa, allenai/winogrande (winogrande_xl),
# Rowan/hellaswag, EleutherAI/lambada_openai (docs/lm_eval.md shows how to keep local copies).
PAPER_TASKS = (
    PaperTask("arc_easy", "arc/arc_easy.yaml", "test", "acc"),
    PaperTask("arc_challenge", "arc/arc_challenge.yaml", "test", "acc_norm"),
    PaperTask("piqa", "piqa/piqa.yaml", "validation", "acc"),
    PaperTask("winogrande", "winogrande/default.yaml", "validation", "acc"),
    PaperTask("hellaswag", "hellaswag/hellaswag.yaml", "validation", "acc_norm"),
    PaperTask("lambada_openai", "lambada/lambada_openai.yaml", "test", "acc", in_average=False),
)


def paper_average(results: dict) -> float:
    """The paper's "Avg" from lm-eval's results (the `results` JSON it writes, or simple_evaluate's
    return): the mean of the five averaged tasks' reported metrics, as a fraction."""
    per_task = results["results"]
    missing = [t.name for t in PAPER_TASKS if t.in_average and t.name not in per_task]
    if missing:
        raise MQDeployError(f"the paper's average needs {', '.join(missing)} in the results as well")
    scores = [per_task[t.name][f"{t.metric},none"] for t in PAPER_TASKS if t.in_average]
    return sum(scores) / len(scores)


def lm_eval_tasks_dir() -> Path:
    try:
        import lm_eval.tasks
    except ImportError:
        raise MQDeployError("writing lm-eval tasks needs lm-evaluation-harness: "
                            "pip install 'mq-deploy[eval]'") from None
    return Path(lm_eval.tasks.__file__).parent


def local_task_config(task: PaperTask, data_file: Path, tasks_dir: Path) -> dict:
    """lm-eval's task, its documents from `data_file` as the evaluated split, no other split (zero-shot
    needs no training documents, and a missing split must not be looked for)."""
    splits = {"training_split": None, "validation_split": None, "test_split": None,
              f"{task.split}_split": task.split}
    return {"include": str(tasks_dir / task.task_file), "task": task.name, "dataset_path": "json",
            "dataset_name": None, "dataset_kwargs": {"data_files": {task.split: str(data_file.resolve())}}, **splits}


def is_local_task_file(path: Path) -> bool:
    """A task file `write_local_tasks` wrote (JSON naming a paper task, reading it from JSONL)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return (isinstance(data, dict) and data.get("task") == Path(path).stem and data.get("dataset_path") == "json"
            and any(t.name == data["task"] for t in PAPER_TASKS))


def write_local_tasks(data_dir, out_dir, force: bool = False) -> list[Path]:
    """One YAML per paper task whose `<name>.jsonl` is in data_dir; the YAML paths written, all of
    them or none. A file already there is replaced only if this function wrote it and force."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    found = [(task, data_dir / f"{task.name}.jsonl") for task in PAPER_TASKS]
    found = [(task, data_file) for task, data_file in found if data_file.is_file()]
    if not found:
        raise MQDeployError(f"no task data in {data_dir}: expected one or more of "
                            f"{', '.join(t.name + '.jsonl' for t in PAPER_TASKS)} (docs/lm_eval.md)")
    if out_dir.exists() and not out_dir.is_dir():
        raise MQDeployError(f"--out {out_dir} is a file; give a directory for the task files")
    paths = [out_dir / f"{task.name}.yaml" for task, _ in found]
    check_output_files(paths, "lm-eval task file", is_local_task_file, force,
                       inputs=[data_file for _, data_file in found])
    tasks_dir = lm_eval_tasks_dir()
    with atomic_files() as stage:
        for (task, data_file), path in zip(found, paths):
            # JSON is YAML: no YAML writer needed, and nothing in it needs lm-eval's !function tag
            text = json.dumps(local_task_config(task, data_file, tasks_dir), indent=2) + "\n"
            stage.file(path).write_text(text, encoding="utf-8")
    return paths
