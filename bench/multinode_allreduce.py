"""gloo all-reduce between 2 dev-cluster nodes vs 2 tasks on one node (the reference).

    .venv/bin/python bench/multinode_allreduce.py          # needs `make cluster-up` (2+ nodes)

Runs the same srun step twice: `-N1 -n2` (both ranks in one node's namespace) and `-N2 -n2`
(one rank per node, traffic over the veth pairs and the bridge). Each rank times a tiny
all-reduce (the trainer's per-step stop flag: 2 floats) and a 4 MiB one (a small model's
gradients), after a warm-up. Prints median latency, bandwidth and the 2-node/1-node ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

SIZES = {"flag (2 floats)": 2, "grads (4 MiB)": 1 << 20}
ROUNDS = 50


def worker() -> None:
    """One rank: rendezvous at the first node of the job, time all-reduces, rank 0 prints JSON."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    first = subprocess.run(
        ["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    started = time.perf_counter()
    dist.init_process_group("gloo", init_method=f"tcp://{first}:29533", rank=rank, world_size=world)
    found: dict[str, float] = {"rendezvous_s": time.perf_counter() - started}
    for name, numel in SIZES.items():
        tensor = torch.ones(numel)
        for _ in range(5):
            dist.all_reduce(tensor)
        times = []
        for _ in range(ROUNDS):
            begin = time.perf_counter()
            dist.all_reduce(tensor)
            times.append(time.perf_counter() - begin)
        found[name] = statistics.median(times)
    dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(found))


def measure(nodes: int) -> dict[str, float]:
    """Median timings of a 2-rank step over `nodes` nodes."""
    command = ["srun", f"-N{nodes}", "-n2", "--cpus-per-task=1", sys.executable, __file__, "--worker"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    one, two = measure(1), measure(2)
    print(f"{'':18} {'1 node x 2 tasks':>18} {'2 nodes x 1 task':>18} {'ratio':>7}")
    print(f"{'rendezvous':18} {one['rendezvous_s']:>16.2f} s {two['rendezvous_s']:>16.2f} s")
    for name in SIZES:
        a, b = one[name] * 1e3, two[name] * 1e3
        print(f"{name:18} {a:>15.2f} ms {b:>15.2f} ms {b / a:>6.2f}x")
    grads = 4 * SIZES["grads (4 MiB)"] / 2**20
    print(
        f"{'4 MiB bandwidth':18} {grads / one['grads (4 MiB)']:>12.0f} MiB/s "
        f"{grads / two['grads (4 MiB)']:>12.0f} MiB/s"
    )


if __name__ == "__main__":
    worker() if "--worker" in sys.argv else main()
