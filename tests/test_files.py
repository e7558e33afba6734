"""Every file graphgrad writes gets the mode the user's umask gives (as open() would), and is
written atomically: a failed write leaves the previous file and no temporary file behind."""
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import graphgrad as gg
from graphgrad.files import atomic_write, current_umask


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _small_program():
    x = gg.placeholder((None, 3), name="x")
    w = gg.variable(np.ones((3, 2), dtype=np.float32), name="w")
    loss = gg.mean((x @ w) ** 2)
    return x, w, loss, gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))


def test_current_umask_reads_without_changing(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_pictures_plans_and_checkpoints_follow_the_umask(tmp_path, umask):
    x, w, loss, step = _small_program()
    step(x=np.ones((4, 3), dtype=np.float32))
    expected = 0o666 & ~umask
    written = [
        gg.render(loss, str(tmp_path / "graph.png")),
        gg.render(loss, str(tmp_path / "graph.dot")),
        step.render(str(tmp_path / "plan.png"), plan=True),
        gg.render_memory(step, str(tmp_path / "memory.png")),
        gg.save(str(tmp_path / "ckpt.npz"), step),
    ]
    for path in written:
        assert _mode(path) == expected, (path, oct(_mode(path)), oct(expected))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz", "graph.dot", "graph.png", "memory.png",
                                                          "plan.png"]


def test_render_command_follows_the_umask(tmp_path):
    script = tmp_path / "model.py"
    script.write_text("import graphgrad as gg\nx = gg.placeholder((2,), name='x')\n"
                      "gg.compile(gg.sum(x * x))\n")
    out = tmp_path / "out"
    env = dict(os.environ)
    code = "import os, sys; os.umask(0o027); from graphgrad.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, "render", str(script), "--out", str(out)], check=True, env=env,
                   capture_output=True, timeout=120)
    pngs = list(out.iterdir())
    assert len(pngs) == 1 and _mode(pngs[0]) == 0o640


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(target)) as f:
            f.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
