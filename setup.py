"""graphgrad: a computation-graph compiler for training neural networks, with a C core."""
from setuptools import find_packages, setup

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
    cffi_modules=["graphgrad/_build_ffi.py:ffibuilder"],
    entry_points={"console_scripts": ["graphgrad=graphgrad.cli:main"]},
    zip_safe=False,
)
