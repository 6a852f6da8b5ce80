"""torchreid's PyTorch HA-CNN training steps per second: the reference for
`bench_training.py --reference` (not a test; benchmarks/README.md).

    python benchmarks/reference_torchreid_train.py [--threads K] [--batch_size 32]
        [--steps 10] [--warmup 3] [--num_classes 1000] [--optimizer sgd]

Needs PyTorch and torchreid in the interpreter that runs it (neither is a
dependency of this project; install them in a separate venv). Builds
`build_model('hacnn', num_classes, loss='softmax')` (no pretrained weights), and
times full training steps on random 160x64 float32 batches: forward in training
mode (global + local logits), cross-entropy with label smoothing 0.1 on each
(averaged, as torchreid's engine does), backward, SGD momentum 0.9 with weight
decay 5e-4 (or Adam). Warm-up steps are excluded. `--threads` defaults to
$BENCH_THREADS (set by bench_training.py to TensorFlow's intra-op threads) or
the usable CPUs. Prints one line, `img_per_s=<number>` plus key=value context.
"""

import argparse
import os
import sys
import time


def load_torchreid():
    """torchreid's model factory (the upstream layout `torchreid.models` or the
    PyPI repackaging's `torchreid.reid.models`), or exit saying what is missing."""
    try:
        import torch  # noqa: F401
        import torchreid
    except ImportError as e:
        raise SystemExit(f"reference_torchreid_train.py needs PyTorch and torchreid in this interpreter "
                         f"({sys.executable}): {e}. They are not dependencies of keras-hpnet; see "
                         f"benchmarks/README.md, 'Training against torchreid'.") from None
    models = getattr(torchreid, "models", None) or getattr(getattr(torchreid, "reid", None), "models", None)
    if models is None or not hasattr(models, "build_model"):
        raise SystemExit(f"torchreid {getattr(torchreid, '__version__', '?')} has no models.build_model")
    return torchreid, models


def default_threads() -> int:
    value = os.environ.get("BENCH_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--batch_size", type=int, default=int(os.environ.get("BENCH_BATCH_SIZE") or 32))
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--num_classes", type=int, default=1000, help="identities (the synthetic dataset's 1,000)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    args = p.parse_args()
    if min(args.threads, args.batch_size, args.steps, args.num_classes) < 1 or args.warmup < 0:
        raise SystemExit("--threads, --batch_size, --steps and --num_classes must be >= 1, --warmup >= 0")
    torchreid, models = load_torchreid()
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = models.build_model("hacnn", num_classes=args.num_classes, loss="softmax", pretrained=False,
                               use_gpu=False)
    model.train()
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch_size, 3, 160, 64, generator=gen),
                torch.randint(0, args.num_classes, (args.batch_size,), generator=gen)) for _ in range(2)]

    def step(i):
        images, labels = batches[i % len(batches)]
        outputs = model(images)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        loss = sum(F.cross_entropy(o, labels, label_smoothing=0.1) for o in outputs) / len(outputs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    for i in range(args.warmup):
        step(i)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(args.steps):
        step(i)
    total = time.perf_counter() - t0
    cpu_step = (time.process_time() - c0) / args.steps
    print(f"img_per_s={args.steps * args.batch_size / total:.2f} cpu_s_per_step={cpu_step:.2f} "
          f"threads={torch.get_num_threads()} batch={args.batch_size} optimizer={args.optimizer} "
          f"torch={torch.__version__} torchreid={getattr(torchreid, '__version__', '?')} "
          f"cpu_capability={torch.backends.cpu.get_cpu_capability()}", flush=True)


if __name__ == "__main__":
    main()
