"""The `graphgrad` command: `graphgrad demo` (train on the bundled MNIST, write the pictures) and
`graphgrad render SCRIPT.py` (run a script and draw every program it compiles)."""
from __future__ import annotations

import argparse
import os
import runpy
import sys


def render_script(script: str, out: str, script_args: list[str] | None = None) -> list[str]:
    """Run `script` and draw the graph of every Program it compiles into `out` (one PNG each,
    named after the script and the program's order of creation). Returns the paths."""
    from . import runtime
    from .viz import render

    compiled: list = []
    original_init = runtime.Program.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        compiled.append(self)

    runtime.Program.__init__ = recording_init
    saved_argv = sys.argv
    sys.argv = [script] + list(script_args or [])
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        runtime.Program.__init__ = original_init
        sys.argv = saved_argv
    os.makedirs(out, exist_ok=True)
    stem = os.path.splitext(os.path.basename(script))[0]
    paths = []
    for i, program in enumerate(compiled):
        path = os.path.join(out, f"{stem}_program{i}.png")
        render(program.outputs + program.updates, path, rankdir="TB")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphgrad", description="graphgrad command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train the MNIST MLP on the bundled digits and write the pictures")
    demo.add_argument("--out", default="out")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--quick", action="store_true")
    rend = sub.add_parser(
        "render", help="run a script and draw every program it compiles",
        description="Run SCRIPT and draw every program it compiles. --out may come before or after the "
                    "script; every other argument goes to the script, and so does everything after `--` "
                    "(`graphgrad render train.py --out pics -- --out script_out`).")
    rend.add_argument("script")
    rend.add_argument("--out", default="out", help="folder for the PNGs (default: out)")
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in argv:   # everything after -- belongs to the script, --out included
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "render":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")

    if args.command == "render":
        for path in render_script(args.script, args.out, unknown + script_args):
            print(f"wrote {path}")
        return 0
    from .demo import run_demo
    run_demo(out=args.out, epochs=args.epochs, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
