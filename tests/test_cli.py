"""The command line: `graphgrad ...` and `python -m graphgrad ...` are the same program; render's
--out works on either side of the script, and the script gets the rest of the arguments."""
import subprocess
import sys

from graphgrad.cli import main

SCRIPT = """import sys
import graphgrad as gg
open(sys.argv[0] + ".args", "w").write(repr(sys.argv[1:]))
x = gg.placeholder((2,), name="x")
gg.compile(gg.sum(x * x))
"""


def _script(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(SCRIPT)
    return path


def _args_seen(script) -> list:
    return eval(open(str(script) + ".args").read())


def test_python_dash_m_runs_the_command_line(tmp_path):
    script = _script(tmp_path)
    done = subprocess.run([sys.executable, "-m", "graphgrad", "render", str(script), "--out", str(tmp_path / "pics")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "model_program0.png" in done.stdout
    assert (tmp_path / "pics" / "model_program0.png").is_file()


def test_render_out_before_or_after_the_script(tmp_path, capsys):
    script = _script(tmp_path)
    assert main(["render", "--out", str(tmp_path / "before"), str(script)]) == 0
    assert main(["render", str(script), "--out", str(tmp_path / "after")]) == 0
    assert (tmp_path / "before" / "model_program0.png").is_file()
    assert (tmp_path / "after" / "model_program0.png").is_file()


def test_render_passes_other_arguments_and_everything_after_dashes_to_the_script(tmp_path):
    script = _script(tmp_path)
    assert main(["render", str(script), "--quick", "data.csv", "--out", str(tmp_path / "pics"),
                 "--", "--out", "mine"]) == 0
    assert _args_seen(script) == ["--quick", "data.csv", "--out", "mine"]
    assert (tmp_path / "pics" / "model_program0.png").is_file()
