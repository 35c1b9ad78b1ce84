"""The GPU report, written section by section so a run cut short still leaves what it measured.

Each stage adds a section and a row in the summary; the whole file is rewritten after every
section (atomically), so docs/gpu_report.md is always a complete, readable document.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import tempfile
import time

from mq_deploy.markdown import markdown_table

PASS, FAIL, SKIP, ERROR = "pass", "FAIL", "skipped", "ERROR"


@dataclasses.dataclass
class StageResult:
    name: str
    status: str          # PASS / FAIL / SKIP / ERROR
    summary: str         # one line
    seconds: float


class Report:
    def __init__(self, path: pathlib.Path, title: str, header_lines: list[str], copies: list[pathlib.Path] = ()):
        self.path = pathlib.Path(path)
        self.copies = [pathlib.Path(c) for c in copies]
        self.title = title
        self.header = list(header_lines)
        self.stages: list[StageResult] = []
        self.sections: list[str] = []
        self.started = time.time()
        self.write()

    def add(self, result: StageResult, body: str) -> None:
        self.stages.append(result)
        self.sections.append(f"## {result.name}: {result.status}\n\n{body.strip()}\n")
        self.write()
        print(f"[gpu_verify] {result.name}: {result.status} ({result.seconds:.1f} s) {result.summary}", flush=True)

    def failed(self) -> int:
        return sum(s.status in (FAIL, ERROR) for s in self.stages)

    def text(self, finished: bool = False) -> str:
        rows = [{"stage": s.name, "status": s.status, "seconds": s.seconds, "summary": s.summary} for s in self.stages]
        elapsed = time.time() - self.started
        state = ("finished" if finished else "IN PROGRESS (a run cut short stops here)")
        lines = [f"# {self.title}", "", *self.header, "",
                 f"Run {state}, {elapsed:.0f} s so far; {len(self.stages)} stages, {self.failed()} failed.", "",
                 markdown_table(rows, [("stage", "stage", ""), ("status", "status", ""), ("s", "seconds", ".1f"),
                                       ("result", "summary", "")]) if rows else "(no stage finished yet)", ""]
        return "\n".join(lines + self.sections)

    def write(self, finished: bool = False) -> None:
        text = self.text(finished)
        for target in [self.path, *self.copies]:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, target)

    def finish(self) -> None:
        self.write(finished=True)


def copy_file(src: pathlib.Path, dst_dir: pathlib.Path | None) -> None:
    if dst_dir is not None and src.exists():
        dst_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst_dir / src.name)
