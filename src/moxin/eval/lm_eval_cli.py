"""`python -m moxin.eval.lm_eval_cli ARGS`: lm-eval's own command line with the `moxin` model registered.

lm-eval 0.4.13 finds models only in its registry (a fixed MODEL_MAPPING plus whatever was imported before it
parses the command line); it has no plugin entry-point group. So `lm_eval --model moxin` cannot work by itself;
this module registers the adapter, then hands over to lm-eval's CLI unchanged:

    python -m moxin.eval.lm_eval_cli run --model moxin --model_args path=runs/tiny/pretrain/checkpoints/step-00000640 \\
        --tasks hellaswag_local --include_path src/moxin/eval/tasks --metadata '{"data_dir": "../shared/data"}'

moxin's local task folder is added to --include_path automatically, and a relative data_dir in --metadata is made
absolute (lm-eval would otherwise resolve data paths against the current directory at load time)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _with_moxin_tasks(argv: list[str]) -> list[str]:
    from moxin.eval.catalog import TASKS_DIR

    argv = list(argv)
    if not argv or argv[0] not in ("run", "ls", "validate"):
        argv.insert(0, "run")  # lm-eval's default subcommand
    if "--include_path" in argv:
        i = argv.index("--include_path") + 1
        argv[i] = f"{argv[i]}:{TASKS_DIR}" if i < len(argv) else str(TASKS_DIR)
    else:
        argv += ["--include_path", str(TASKS_DIR)]
    if "--metadata" in argv:
        i = argv.index("--metadata") + 1
        try:
            meta = json.loads(argv[i])
            if isinstance(meta, dict) and "data_dir" in meta:
                meta["data_dir"] = str(Path(meta["data_dir"]).expanduser().resolve())
                argv[i] = json.dumps(meta)
        except (ValueError, IndexError):
            pass  # key=value metadata: lm-eval parses and reports it
    return argv


def main(argv: list[str] | None = None) -> None:
    import moxin.eval.adapter  # noqa: F401 - registers --model moxin
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *_with_moxin_tasks(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()


if __name__ == "__main__":  # pragma: no cover
    main()
