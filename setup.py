"""graphgrad: a computation-graph compiler for training neural networks, with a C core.

The C core is built once per kernel set (graphgrad/_build_ffi.py says which and why); the
modules are compiled in parallel, one per core, unless `build_ext --parallel N` says otherwise.
"""
import glob
import importlib.util
import os

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def _kernel_sets() -> list[str]:
    # _build_ffi.py by path: importing the graphgrad package would need the modules being built
    spec = importlib.util.spec_from_file_location("_gg_build_ffi", os.path.join(HERE, "graphgrad", "_build_ffi.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.kernel_sets())


class BuildCore(build_ext):
    """build_ext that compiles the kernel-set modules in parallel and removes core modules of an
    earlier build that this one does not make (a stale one would shadow graphgrad/_core.py or be
    picked by it)."""

    def finalize_options(self):
        if self.parallel is None:
            modules = len(self.distribution.ext_modules or [])
            self.parallel = max(1, min(modules, os.cpu_count() or 1))
        super().finalize_options()

    def run(self):
        made = {ext.name.rsplit(".", 1)[-1] for ext in self.extensions}
        folder = os.path.join(HERE if self.inplace else self.build_lib, "graphgrad")
        for path in glob.glob(os.path.join(folder, "_core*.so")) + glob.glob(os.path.join(folder, "_core*.pyd")):
            if os.path.basename(path).split(".", 1)[0] not in made:
                os.remove(path)
        super().run()


setup(
    name="graphgrad",
    version="0.1.0",
    description="Computation-graph compiler for training neural networks: one C call per training step",
    packages=find_packages(include=["graphgrad", "graphgrad.*"]),
    package_data={"graphgrad": ["datasets/data/*"]},
    python_requires=">=3.10",
    setup_requires=["cffi>=1.15"],
    install_requires=["numpy", "cffi>=1.15", "networkx", "graphviz", "tqdm"],
    # optional extras: ONNX export/import; data-parallel training over MPI (mpi4py + MPICH wheels)
    extras_require={"onnx": ["onnx"], "distributed": ["mpi4py", "mpich"]},
    cffi_modules=[f"graphgrad/_build_ffi.py:ffibuilder_{name}" for name in _kernel_sets()],
    cmdclass={"build_ext": BuildCore},
    entry_points={"console_scripts": ["graphgrad=graphgrad.cli:main"]},
    zip_safe=False,
)
