"""Reference for bench_edge --reference: torchreid's PyTorch HA-CNN, eager, batch 1, p50 latency.

    python benchmarks/reference_torch_hacnn.py --threads 2
    python benchmarks/bench_edge.py --models hacnn --threads 2 \
        --reference "python benchmarks/reference_torch_hacnn.py --threads 2"

Prints `p50_ms=<number>` (the line bench_edge reads; benchmarks/README.md).
torch and torchreid are not keras-hpnet dependencies: install them in the
environment that runs this script (`pip install torch torchvision torchreid`,
or torchreid from its repository). Without them it says so and exits 2.
Untrained weights (latency does not depend on them), eval mode, 160x64 input
(HA-CNN's fixed size), random pixels.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--num_classes", type=int, default=751)
    args = p.parse_args(argv)
    try:
        import numpy as np
        import torch
        import torchreid
    except ImportError as e:
        print(f"error: this reference needs torch and torchreid, not installed here ({e}); "
              "pip install torch torchvision torchreid", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    model = torchreid.models.build_model(name="hacnn", num_classes=args.num_classes, pretrained=False,
                                         use_gpu=False)  # torchreid moves the sampler theta to CUDA otherwise
    model.eval()
    x = torch.rand(1, 3, 160, 64)
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.runs):
            t0 = time.perf_counter()
            model(x)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    print(f"torch {torch.__version__}, torchreid {getattr(torchreid, '__version__', '?')}, "
          f"threads {torch.get_num_threads()}, {args.runs} runs")
    print(f"p50_ms={1e3 * float(np.median(times)):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
