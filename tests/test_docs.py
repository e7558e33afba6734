"""The user guide stays true to the code: every public name has an entry in docs/api.md (and
every entry names something that exists), every optimizer has its rule in docs/optimizers.md,
every error class is in docs/troubleshooting.md, the python blocks of getting-started.md,
concepts.md and troubleshooting.md run, and the links of the guide and the README resolve."""
import inspect
import os
import re

import pytest

import graphgrad as gg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
SUBMODULES = ("nn", "optim", "schedules", "init", "datasets", "distributed", "errors", "callbacks")
REGENERATE = "run `python docs/gen_api.py` to regenerate docs/api.md from the docstrings"


def _read(name: str) -> str:
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


def public_names() -> list[str]:
    """Qualified public names: gg.__all__ (the submodules aside), and each submodule's __all__ or,
    without one, the classes and functions it defines (gg.errors: its exception classes)."""
    names = [f"gg.{n}" for n in gg.__all__ if n not in SUBMODULES + ("ops",)]
    for sub in SUBMODULES:
        module = getattr(gg, sub)
        if hasattr(module, "__all__"):
            found = list(module.__all__)
        else:
            found = [n for n, obj in vars(module).items() if not n.startswith("_")
                     and (inspect.isclass(obj) or inspect.isfunction(obj))
                     and getattr(obj, "__module__", "") == module.__name__]
        if sub == "errors":
            found = [n for n in found if inspect.isclass(getattr(module, n))]
        names += [f"gg.{sub}.{n}" for n in found]
    return names


def documented_names() -> set[str]:
    """The names with a heading in api.md: ### `gg.x(...)` or ### `class gg.x(...)`."""
    return set(re.findall(r"^### `(?:class )?(gg(?:\.\w+)+)", _read("api.md"), flags=re.M))


def test_every_public_name_is_documented():
    missing = [n for n in public_names() if n not in documented_names()]
    assert not missing, f"undocumented public names {missing}: {REGENERATE}"


def test_every_documented_name_exists():
    for name in documented_names():
        obj = gg
        for part in name.split(".")[1:]:
            assert hasattr(obj, part), f"docs/api.md documents {name}, which does not exist: {REGENERATE}"
            obj = getattr(obj, part)


def test_public_names_cover_the_api():
    names = public_names()
    for expected in ("gg.compile", "gg.grad", "gg.fit", "gg.nn.Dense", "gg.optim.Adam", "gg.init.he_normal",
                     "gg.datasets.mnist", "gg.schedules.CosineAnnealingLR", "gg.errors.NumericsError"):
        assert expected in names


def test_optimizers_page_has_every_optimizer_and_its_rule():
    page = _read("optimizers.md")
    headings = set(re.findall(r"^## (\w+)$", page, flags=re.M))
    optimizers = [n for n in gg.optim.__all__ if inspect.isclass(getattr(gg.optim, n))
                  and issubclass(getattr(gg.optim, n), gg.optim.Optimizer) and n != "Optimizer"]
    assert optimizers and not set(optimizers) - headings
    # each optimizer's section carries the update rule its docstring states, line for line
    for name in optimizers:
        section = page.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        doc = inspect.getdoc(getattr(gg.optim, name))
        rule_lines = [l.strip() for l in doc.splitlines() if "←" in l]
        assert all(line in section for line in rule_lines), name


def test_troubleshooting_names_every_error():
    page = _read("troubleshooting.md")
    for name in vars(gg.errors):
        obj = getattr(gg.errors, name)
        if inspect.isclass(obj) and issubclass(obj, gg.GraphGradError) and obj is not gg.GraphGradError:
            assert name in page, name


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


@pytest.mark.parametrize("page", ["getting-started.md", "concepts.md", "troubleshooting.md"])
def test_python_blocks_run(page, tmp_path, monkeypatch, capsys):
    blocks = _python_blocks(_read(page))
    assert blocks
    monkeypatch.chdir(tmp_path)          # the snippets write their pictures and checkpoints here
    namespace = {"__name__": "__docs__"}
    for k, block in enumerate(blocks):
        exec(compile(block, f"{page} block {k + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    if page == "getting-started.md":
        assert os.path.exists("first_model.png") and os.path.exists("train_step.png")
        assert "test accuracy per epoch" in out
    if page == "concepts.md":
        assert "[8.0, 12.0, 12.0]" in out and "(8, 2) (3, 2)" in out
        assert os.path.exists("plan.png") and os.path.exists("memory.png")
    if page == "troubleshooting.md":
        assert 'log node "log_a"' in out and os.path.exists("nan.png")


def test_links_resolve():
    pages = [os.path.join(ROOT, "README.md")] + [os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md")]
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(page), target))
            assert os.path.exists(path), f"{os.path.relpath(page, ROOT)} links to missing {target}"


def test_performance_page_leaves_the_numbers_to_a_measured_run():
    page = _read("performance.md")
    assert "python bench/train_step.py" in page
    table = page.split("<!-- COORDINATOR", 1)[1].split("<!-- END COORDINATOR -->", 1)[0]
    assert "|" in table


def _source_files() -> list[str]:
    """Every source file of the package and the C core, as paths relative to graphgrad/ or csrc/."""
    found = []
    for top, suffixes in (("graphgrad", (".py",)), ("csrc", (".c", ".h", ".def"))):
        base = os.path.join(ROOT, top)
        for folder, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if d not in ("data", "__pycache__")]
            found += [os.path.relpath(os.path.join(folder, f), base) for f in files if f.endswith(suffixes)]
    return sorted(found)


def test_design_names_every_module_of_the_package_and_the_c_core():
    """docs/design.md is the map: a module it does not name is a module nobody can find."""
    text = _read("design.md")
    unnamed = [path for path in _source_files()
               if not re.search(r"(?<![\w.])" + re.escape(os.path.basename(path)) + r"(?!\w)", text)
               and not (path.endswith(".py") and re.search(r"(?<![\w.])" + re.escape(path[:-3]) + r"\b", text))]
    assert not unnamed, f"docs/design.md's Layout does not name {unnamed}"
