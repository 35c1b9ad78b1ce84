"""Render docs/errors.md from the bad-input table that tests/test_bad_inputs.py runs, so the page
lists exactly the inputs the tests prove are refused. Usage: python scripts/errors_doc.py"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = """# Bad inputs and the one line each one gets

Every `mq-deploy` verb checks its inputs before the long work starts and reports a problem as one
line, `error: ...`, with exit status 2. Nothing is written, changed or left behind when it does:
outputs are staged beside their target and renamed into place only when complete, and an existing
output is replaced only if mq-deploy wrote it and `--force` is given. The rows below are the table
`tests/test_bad_inputs.py` runs (each row asserts exit status 2, exactly one `error:` line containing
the excerpt, no traceback, no file changed); this page is generated from it by
`python scripts/errors_doc.py` (a test fails when it is stale).

Placeholders: `{fp}` an FP model directory, `{q}` a quantized artifact made from it, `{onnx}` that
artifact's export set, `{other}` another model, `{notok}` a model saved by transformers without
tokenizer files, `{tmp}` a working directory; the rest are described in `tests/bad_input_cases.py`.

| # | verb | bad input | command | the error line says |
|---:|---|---|---|---|
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(cases) -> str:
    rows = []
    for i, case in enumerate(cases, start=1):
        command = "mq-deploy " + " ".join(case.argv)
        note = " (shows once the work runs)" if case.after_work else ""
        rows.append(f"| {i} | {case.verb} | {_cell(case.what)}{note} | `{_cell(command)}` | {_cell(case.expect)} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from bad_input_cases import CASES
    (REPO / "docs" / "errors.md").write_text(render(CASES), encoding="utf-8")
    print(f"wrote docs/errors.md ({len(CASES)} bad inputs)")


if __name__ == "__main__":
    main()
