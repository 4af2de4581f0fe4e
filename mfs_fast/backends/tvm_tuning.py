"""MetaSchedule tuning for the TVM backend; logs live in tuning_logs/<target-name>/.

``tune`` writes a JSON database (two JSON-lines files); the TVM backend applies the database
of its target automatically when it builds. Notes that shaped this (TVM 0.27, see
TVM_NOTES.md in the development workspace): the default builder imports
``tvm.s_tir.tensor_intrin`` (~40 s) in every worker, so a lean ``f_build`` is used; the JSON
database needs apache-tvm-ffi 0.1.14.x (0.1.15 segfaults in save_json).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from pathlib import Path

from ..rpc import parse_rpc_address

TUNING_LOGS = Path(__file__).resolve().parents[2] / "tuning_logs"
DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")


def target_name(target: dict) -> str:
    """Folder name for a target, e.g. ``llvm-x86_64-x86-64-v3-2c`` or ``cuda-sm_90``."""
    if target["kind"] != "llvm":
        return f"{target['kind']}-{target.get('arch') or target.get('device') or 'generic'}"
    arch = target.get("mtriple", "host").split("-")[0]
    cpu = target.get("mcpu") or "+".join(target.get("mattr", [])) or "generic"
    return f"{target['kind']}-{arch}-{cpu}-{target.get('num-cores', 0)}c".replace("+", "")


def log_dir(target: dict) -> Path:
    return TUNING_LOGS / target_name(target)


def log_hash(target: dict) -> str | None:
    """Hash of the target's tuning database, or None when there is none."""
    folder = log_dir(target)
    if not all((folder / name).is_file() for name in DATABASE_FILES):
        return None
    digest = hashlib.sha256()
    for name in DATABASE_FILES:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def lower_for_tuning(module, tvm_target):
    """The passes MetaSchedule tasks are extracted after (legalize, fold, fuse)."""
    import tvm
    from tvm import relax

    with tvm_target:
        return tvm.transform.Sequential([
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            relax.pipeline.zero_pipeline(),
        ])(module)


def apply_tuning(module, tvm_target, target: dict):
    """Lower ``module`` and schedule it from the target's database (if any)."""
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    lowered = lower_for_tuning(module, tvm_target)
    if log_hash(target) is None:
        return lowered
    database = ms.database.JSONDatabase(work_dir=str(log_dir(target)))
    with tvm_target, database:
        return relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(lowered)


def lean_build(mod, target, _params):
    """MetaSchedule builder without the 40 s tensor-intrinsics import of the default one."""
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm.build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def is_hand_scheduled(task) -> bool:
    """Kernels written already scheduled (tvm_kernels) are never tuned."""
    return any(bool(func.attrs and func.attrs.get("tirx.is_scheduled", False))
               for func in task.dispatched[0].functions.values())


def untuned_tasks(tasks, database) -> list:
    """Extracted tasks without any tuning record in ``database`` (a workload alone is not enough)."""
    return [t for t in tasks if not is_hand_scheduled(t)
            and not database.get_top_k(database.commit_workload(t.dispatched[0]), 1)]


def parse_rpc(spec: str) -> tuple[str, int, str]:
    """``host:port:key`` of a TVM RPC tracker -> (host, port, key); tuning needs the tracker's key."""
    address = parse_rpc_address(spec, need_key=True)
    return address.host, address.port, address.key


def cross_export(compiler: str, mod) -> str:
    """MetaSchedule export for devices without a compiler: link the candidate here, cross."""
    import os
    import tempfile

    from tvm.support import cc

    path = os.path.join(tempfile.mkdtemp(prefix="mfs-ms-"), "candidate.so")
    mod.export_library(path, fcompile=cc.cross_compiler(compiler))
    return path


def _runner(rpc: str | None):
    """Measure candidates here, or on the devices registered with an RPC tracker under a key."""
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20)
    if rpc is None:
        return ms.runner.LocalRunner(timeout_sec=60, evaluator_config=evaluator)
    host, port, key = parse_rpc(rpc)
    config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                 session_priority=1, session_timeout_sec=120)
    return ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator, max_workers=1)


def cost_model_name() -> str:
    """XGBoost's learned cost model when available (the CPU-only ``xgboost-cpu`` wheel), else random."""
    import importlib.util

    return "xgb" if importlib.util.find_spec("xgboost") is not None else "random"


def slowest_tasks(tasks, database, count: int) -> list:
    """The ``count`` tuned tasks costing most per forward (best measured time x calls)."""
    import numpy as np

    costs = []
    for task in tasks:
        if is_hand_scheduled(task):
            continue
        records = database.get_top_k(database.commit_workload(task.dispatched[0]), 1)
        if records and records[0].run_secs:
            costs.append((float(np.mean([float(x) for x in records[0].run_secs])) * task.weight, task))
    costs.sort(key=lambda pair: -pair[0])
    return [task for _, task in costs[:count]]


def tune(module, target: dict, trials: int, per_task: int = 16, retune: int = 0, rpc: str | None = None,
         logs: Path | None = None, cross_compiler: str | None = None) -> Path:
    """Run MetaSchedule on ``module`` (an imported IDN) for the tasks the target's database lacks.

    Incremental: a second run spends its trials only on kernels that have no record yet, plus
    the ``retune`` kernels that cost most per forward (their search starts from the records
    already in the database). ``rpc`` (``host:port:key``) measures on remote devices.
    ``logs`` overrides the database folder (default: tuning_logs/<target-name>/).
    ``cross_compiler`` (e.g. ``aarch64-linux-gnu-g++``) links each candidate here for a device
    that has no compiler of its own (the default ships object archives for the device to link).
    """
    import tvm
    from tvm.s_tir import meta_schedule as ms

    tvm_target = tvm.target.Target(target)
    lowered = lower_for_tuning(module, tvm_target)
    folder = Path(logs) if logs is not None else log_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    database = ms.database.JSONDatabase(work_dir=str(folder))
    extracted = ms.relax_integration.extract_tasks(lowered, tvm_target)
    tasks = untuned_tasks(extracted, database)
    tasks += [t for t in slowest_tasks(extracted, database, retune) if t not in tasks]
    if tasks:
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, str(folder), seed=0)
        ms.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=str(folder), max_trials_global=trials,
            max_trials_per_task=per_task, num_trials_per_iter=min(per_task, 16),
            builder=ms.builder.LocalBuilder(
                f_build=lean_build, timeout_sec=120,
                f_export=functools.partial(cross_export, cross_compiler) if cross_compiler else None),
            runner=_runner(rpc), database=database, cost_model=cost_model_name(), task_scheduler="gradient",
        )
    for extra in folder.iterdir():  # keep only the database, not the run's logs
        if extra.name not in DATABASE_FILES:
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    return folder
