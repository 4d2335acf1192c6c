"""`python -m moxin.eval.lm_eval_cli ARGS`: lm-eval's own command line with the `moxin` model registered.

lm-eval 0.4.13 finds models only in its registry (a fixed MODEL_MAPPING plus whatever was imported before it
parses the command line); it has no plugin entry-point group. So `lm_eval --model moxin` cannot work by itself;
this module registers the adapter, then hands over to lm-eval's CLI unchanged:

    python -m moxin.eval.lm_eval_cli run --model moxin --model_args path=runs/tiny/pretrain/checkpoints/step-00000640 \\
        --tasks hellaswag_local --include_path src/moxin/eval/tasks --metadata '{"data_dir": "../shared/data"}'

The same command is installed as the `moxin-lm-eval` console script (`moxin-lm-eval --model moxin ...`).
moxin's local task folder is added after the user's --include_path folders (several may be given, or joined with
':'), all passed to lm-eval's TaskManager as a list, and a relative data_dir in --metadata is made absolute (lm-eval
would otherwise resolve data paths against the current directory at load time)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _include_paths(argv: list[str]) -> tuple[list[str], list[str]]:
    """(argv without any --include_path, the folders given). Each value may join folders with ':' as lm-eval's help
    suggests; lm-eval 0.4.13 itself never splits it, so a joined value would silently lose tasks."""
    rest, paths, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--include_path" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--include_path="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            rest.append(arg)
            i += 1
            continue
        paths += [str(Path(p).expanduser().resolve()) for p in value.split(os.pathsep) if p]
    return rest, paths


def _with_moxin_tasks(argv: list[str]) -> tuple[list[str], list[str]]:
    """lm-eval's arguments (with a subcommand, data_dir made absolute) and the task folders: the user's, then
    moxin's own."""
    from moxin.eval.catalog import TASKS_DIR

    argv, paths = _include_paths(list(argv))
    if not argv or argv[0] not in ("run", "ls", "validate"):
        argv.insert(0, "run")  # lm-eval's default subcommand
    if "--metadata" in argv:
        i = argv.index("--metadata") + 1
        try:
            meta = json.loads(argv[i])
            if isinstance(meta, dict) and "data_dir" in meta:
                meta["data_dir"] = str(Path(meta["data_dir"]).expanduser().resolve())
                argv[i] = json.dumps(meta)
        except (ValueError, IndexError):
            pass  # key=value metadata: lm-eval parses and reports it
    return argv, [*paths, str(TASKS_DIR)]


def main(argv: list[str] | None = None) -> None:
    """lm-eval's CLI with `--model moxin` registered and the task folders handed to its TaskManager as a list.
    Also the `moxin-lm-eval` console script."""
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import moxin.eval.adapter  # noqa: F401 - registers --model moxin

    args, paths = _with_moxin_tasks(sys.argv[1:] if argv is None else argv)
    sys.argv = ["lm_eval", *args]
    setup_logging()
    parser = HarnessCLI()
    ns = parser.parse_args()
    if hasattr(ns, "include_path"):
        ns.include_path = paths  # TaskManager takes a list (a ':'-joined string is not split)
    parser.execute(ns)


if __name__ == "__main__":  # pragma: no cover
    main()
