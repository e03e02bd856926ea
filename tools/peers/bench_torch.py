#!/usr/bin/python3
"""The standard spikeflow workload in PyTorch (and snnTorch, where it is installed), for the
comparisons in docs/benchmarks.md.

The network is the one `spikeflow bench` measures: a batch of 64 sequences of 700 input channels
with Bernoulli(0.05) spikes per step; one recurrent layer of 256 LIF neurons,
    v_t = 0.9 v_{t-1} + W x_t + b + W_rec s_{t-1} - s_{t-1},   s_t = H(v_t - 1),
whose spike has the fast-sigmoid surrogate derivative 1 / (1 + 25 |v_t - 1|)^2; a 20-way leaky
readout y_t = 0.9 y_{t-1} + W_out s_t + b_out; cross-entropy of the time-averaged readout;
Adam (lr 1e-3). One training iteration is the forward pass, the backward pass and the update.

    --impl torch     a plain loop over time (`--hoist` computes W x_t for all t in one product first)
    --impl snntorch  the same network from snntorch.Leaky (reset by subtraction) and nn.Linear

Prints one JSON object: the median and every timed iteration in ms, the peak RSS, the versions
of Python, PyTorch (and its BLAS) and snnTorch, the threads and the machine.
"""
import argparse
import json
import platform
import re
import resource
import statistics
import sys
import time

import torch


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100, help="sequence length T")
    p.add_argument("--iters", type=int, default=9, help="timed iterations (after 2 warm-up ones)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--inputs", type=int, default=700)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--outputs", type=int, default=20)
    p.add_argument("--density", type=float, default=0.05, help="probability of an input spike")
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    p.add_argument("--impl", choices=["torch", "snntorch"], default="torch")
    p.add_argument("--hoist", action="store_true", help="torch: the input product for all steps at once")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


class FastSigmoidSpike(torch.autograd.Function):
    """Heaviside forward; 1 / (1 + 25|x|)^2 backward (SuperSpike's fast sigmoid, slope 25)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1.0 + 25.0 * x.abs()) ** 2


def plain_model(a):
    w_in = torch.nn.Linear(a.inputs, a.hidden)
    w_rec = torch.nn.Linear(a.hidden, a.hidden, bias=False)
    w_out = torch.nn.Linear(a.hidden, a.outputs)
    spike = FastSigmoidSpike.apply

    def run(x):
        B = x.shape[1]
        v = x.new_zeros(B, a.hidden)
        s = x.new_zeros(B, a.hidden)
        y = x.new_zeros(B, a.outputs)
        total = x.new_zeros(B, a.outputs)
        # Hoisted: one [T*B, I] x [I, H] product; indexing its result per step keeps the backward
        # pass linear in T (a slice of a precomputed tensor per step would not).
        currents = w_in(x.reshape(-1, a.inputs)).reshape(x.shape[0], B, a.hidden).unbind(0) if a.hoist else None
        for t in range(x.shape[0]):
            i_t = currents[t] if currents is not None else w_in(x[t])
            v = 0.9 * v + i_t + w_rec(s) - s
            s = spike(v - 1.0)
            y = 0.9 * y + w_out(s)
            total = total + y
        return total / x.shape[0]

    return [w_in, w_rec, w_out], run


def snntorch_model(a):
    import snntorch
    from snntorch import surrogate

    w_in = torch.nn.Linear(a.inputs, a.hidden)
    w_rec = torch.nn.Linear(a.hidden, a.hidden, bias=False)
    w_out = torch.nn.Linear(a.hidden, a.outputs)
    lif = snntorch.Leaky(beta=0.9, threshold=1.0, spike_grad=surrogate.fast_sigmoid(slope=25), reset_mechanism="subtract")

    def run(x):
        B = x.shape[1]
        mem = lif.init_leaky()
        s = x.new_zeros(B, a.hidden)
        y = x.new_zeros(B, a.outputs)
        total = x.new_zeros(B, a.outputs)
        for t in range(x.shape[0]):
            s, mem = lif(w_in(x[t]) + w_rec(s), mem)
            y = 0.9 * y + w_out(s)
            total = total + y
        return total / x.shape[0]

    return [w_in, w_rec, w_out], run


def blas():
    """The BLAS library this process loaded (Debian's torch takes whichever libblas.so.3 the system
    or LD_LIBRARY_PATH selects), else what PyTorch's build configuration says."""
    try:
        with open("/proc/self/maps") as maps:
            libs = sorted({line.split()[-1] for line in maps if "blas" in line.lower() and "/" in line})
        if libs:
            return ", ".join(libs)
    except OSError:
        pass
    m = re.search(r"BLAS_INFO=([^,]+)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def main():
    a = parse()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    modules, run = snntorch_model(a) if a.impl == "snntorch" else plain_model(a)
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    x = (torch.rand(a.steps, a.batch, a.inputs) < a.density).float()
    labels = torch.arange(a.batch) % a.outputs

    def iteration():
        if a.mode == "train":
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(run(x), labels)
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                run(x)

    times = []
    for i in range(a.iters + 2):
        t0 = time.perf_counter()
        iteration()
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1000)
    try:
        import snntorch

        snn_version = snntorch.__version__
    except ImportError:
        snn_version = None
    print(json.dumps({
        "impl": a.impl + ("-hoisted" if a.hoist and a.impl == "torch" else ""),
        "mode": a.mode,
        "steps": a.steps,
        "batch": a.batch,
        "inputs": a.inputs,
        "hidden": a.hidden,
        "outputs": a.outputs,
        "density": a.density,
        "threads": a.threads,
        "msPerIter": round(statistics.median(times), 2),
        "iterationsMs": [round(t, 2) for t in times],
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "blas": blas(), "snntorch": snn_version},
        "machine": {"cpu": platform.processor() or platform.machine(), "platform": sys.platform},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }))


if __name__ == "__main__":
    main()
