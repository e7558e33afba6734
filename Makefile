# graphgrad — every target installs what it needs first, on a fresh machine, in or out of a venv.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
PIP_FLAGS ?= --quiet --disable-pip-version-check
RUNTIME_DEPS := numpy cffi networkx graphviz tqdm setuptools wheel
TEST_DEPS := pytest hypothesis matplotlib nbclient nbformat ipykernel
# the notebook's progress bar is an ipywidgets widget (gg.fit falls back to text, with a warning, without it)
NOTEBOOK_DEPS := ipywidgets
# ONNX export/import tests: onnx (the optional extra) and onnxruntime to check the files
ONNX_DEPS := onnx onnxruntime
# distributed training (an optional extra at run time; the tests launch mpirun -n 2): mpi4py and
# MPICH as PyPI wheels (mpirun/mpiexec land beside the Python). With a cluster's own MPI, set
# MPI_DEPS=mpi4py (built against it) or MPI_DEPS= to keep what is installed.
MPI_DEPS ?= mpi4py mpich
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -fopenmp -std=c11

.PHONY: install deps dot build test demo bench asan valgrind clean

deps:
	$(PIP) install $(PIP_FLAGS) $(RUNTIME_DEPS) $(TEST_DEPS) $(NOTEBOOK_DEPS) $(ONNX_DEPS) $(MPI_DEPS)

# the Graphviz `dot` program renders the PNGs; install it when we can, else say what to do
dot:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) || exit 1; \
	  else \
	    echo "graphgrad needs the Graphviz 'dot' program: install it (apt-get install graphviz / brew install graphviz) and rerun"; \
	    exit 1; \
	  fi; }

build: deps
	$(PIP) install $(PIP_FLAGS) --no-build-isolation -e .

install: deps dot build

# the kernel, op, fused-instruction and optimizer tests once more under every other kernel set this
# CPU runs (GRAPHGRAD_ISA per run; the first run uses the best set)
ISA_TESTS := tests/test_gemm.py tests/test_ops.py tests/test_optim.py tests/test_compiler.py tests/test_isa.py
test: install
	$(PYTHON) -m pytest tests
	@for isa in $$($(PYTHON) -c 'from graphgrad import _core; print(*_core.supported_kernel_sets()[1:])'); do \
	  echo "== GRAPHGRAD_ISA=$$isa"; GRAPHGRAD_ISA=$$isa $(PYTHON) -m pytest -q $(ISA_TESTS) || exit 1; done

demo: install
	$(PYTHON) -m graphgrad.cli demo --out out
	$(PYTHON) examples/first_model.py --out out

bench: install
	@for script in bench/[!_]*.py; do [ -e "$$script" ] || continue; echo "== $$script"; $(PYTHON) "$$script" || exit 1; done

# rebuild the C core with AddressSanitizer + UBSan and run the tests under it
asan: deps dot
	rm -f graphgrad/_core*.so
	GRAPHGRAD_CFLAGS="$(ASAN_FLAGS)" $(PIP) install $(PIP_FLAGS) --no-build-isolation -e .
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  $(PYTHON) -m pytest tests -x -p no:cacheprovider
	rm -f graphgrad/_core*.so
	$(PIP) install $(PIP_FLAGS) --no-build-isolation -e .

# valgrind memcheck over one example (--quick): zero errors and no definitely-lost blocks in
# graphgrad's C core, as built and shipped. valgrind 3.19 cannot decode AVX-512, so the run uses the
# AVX2 kernel set (GRAPHGRAD_ISA=avx2; the generic module, which answers the CPU question, loads
# too). tests/valgrind-python.supp silences only errors that start inside CPython, ld.so or cffi's
# module set-up (documented there).
valgrind: deps dot build
	@command -v valgrind >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null) || exit 1; \
	  else echo "make valgrind needs valgrind: apt-get install valgrind"; exit 1; fi; }
	PYTHONMALLOC=malloc GRAPHGRAD_NUM_THREADS=2 GRAPHGRAD_ISA=avx2 valgrind --tool=memcheck --error-exitcode=99 \
	  --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	  --suppressions=tests/valgrind-python.supp \
	  "$$($(PYTHON) -c 'import sys; print(sys.executable)')" examples/linear_regression.py --quick --out out/valgrind

clean:
	rm -rf build dist *.egg-info graphgrad/_core_*.so graphgrad/_core*.c graphgrad/*.o out .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
