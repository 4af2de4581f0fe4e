"""Seconds per training step of the starter recipe, for before/after comparisons of the trainer.

Runs in any checkout (only config keys every version knows): 4 sources x 2 targets at 224,
mesh-warp teacher, no GAN, on the shared test photos (cached once per checkout under --work).
Compare two checkouts side by side, alternating, on an otherwise idle machine:

    python bench/train_step.py --steps 15            # prints {"s_per_step": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "assets" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/mfs_train_step")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                        help="mixed precision where the hardware has it (bf16 on CPUs with AVX512-BF16/AMX; "
                             "checkouts before precision.py ignore it on CPU)")
    parser.add_argument("--teacher-partners", type=int, default=0,
                        help="teacher_partners (checkouts before teacher_cache.py: leave at 0); the teacher's swap "
                             "cache then lives in --work, filled with the whole pool before timing where the "
                             "checkout can (prefill_teacher), else warmed over the warm-up steps")
    parser.add_argument("--data", default=str(SHARED), help="a folder of face photos (default: the shared test photos)")
    args = parser.parse_args()
    from mfs_fast.train import StudentTrainer
    from mfs_fast.train.config import TrainConfig

    work = Path(args.work)
    config = TrainConfig(data=[args.data], output=str(work / "run"), cache=str(work / "cache"), steps=10**6,
                         sources_per_step=4, targets_per_source=2, same_image_share=0.2, same_identity_share=0.1,
                         teacher={"kind": "mesh-warp"}, lambda_id=30.0, lambda_attr=0.0, mask_face_weight=1.0,
                         lambda_kernel=1.0, lambda_gan=0.0, amp=args.amp, threads=args.threads, sample_every=0,
                         checkpoint_every=0, log_every=10**6,
                         **({"teacher_partners": args.teacher_partners} if args.teacher_partners else {})).check()
    trainer = StudentTrainer(config)
    if hasattr(trainer, "prefill_teacher"):  # the pool's swaps made before timing: steps read the cache only
        trainer.prefill_teacher(progress=False)
    for _ in range(args.warmup):
        trainer.train_step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    times.sort()
    cached = getattr(trainer, "group_teacher", None)
    hits = {"teacher_hits": cached.hits, "teacher_misses": cached.misses} if hasattr(cached, "hits") else {}
    print(json.dumps({"s_per_step_median": round(times[len(times) // 2], 4), "s_per_step_mean": round(sum(times) / len(times), 4),
                      "steps": args.steps, "threads": args.threads, "amp": args.amp, **hits, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
