# Conveniences over ./run.sh, which does the set-up (venv, dependencies, C++ core) first.
.PHONY: demo test bench bench-gate arm-rpc-check
demo:
	./run.sh demo
test:
	./run.sh test
bench:
	./run.sh bench
bench-gate:
	./run.sh bench-gate
# the emulated aarch64 device (qemu-user): NEON kernels, then compile -> upload -> run -> parity -> timing
# over TVM RPC (scripts/arm-rpc-server.sh builds its root once, in ~/.cache/mfs_fast)
arm-rpc-check:
	./run.sh setup
	scripts/arm-rpc-server.sh setup
	scripts/arm-rpc-server.sh neon
	.venv/bin/python -m pytest -q -rs tests/test_arm_rpc.py tests/test_targets.py
