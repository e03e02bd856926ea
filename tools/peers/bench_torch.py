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
    --conv           the conv workload of `spikeflow bench --conv` instead: 34x34x2 frames with
                     Bernoulli(0.05) spikes, batch 32; conv 16 channels 5x5 stride 2 "same" -> LIF
                     -> max-pool 2 -> conv 32 channels 3x3 "same" -> LIF -> max-pool 2 -> flatten
                     -> a 10-way leaky readout (PyTorch's NCHW layout; "same" padding as TensorFlow's
                     rule, the odd row and column at the bottom and right)

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
    p.add_argument("--conv", action="store_true", help="the conv workload of spikeflow bench --conv")
    a = p.parse_args()
    if a.conv:
        if a.impl != "torch" or a.hoist:
            p.error("--conv runs the plain torch loop only (no --impl snntorch, no --hoist)")
        for name, value in (("batch", 32), ("outputs", 10)):
            if getattr(a, name) == p.get_default(name):
                setattr(a, name, value)
        a.inputs = 34 * 34 * 2
    return a


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


def same_conv(c_in, c_out, k, stride, size):
    """A convolution with TensorFlow's "same" padding on a size x size input: ceil(size / stride)
    outputs, total padding max((out - 1) * stride + k - size, 0), the odd one at the bottom/right."""
    conv = torch.nn.Conv2d(c_in, c_out, k, stride=stride)
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    pad = (total // 2, total - total // 2, total // 2, total - total // 2)  # left, right, top, bottom
    return conv, (lambda x: conv(torch.nn.functional.pad(x, pad))), out


def conv_model(a):
    conv1, c1, size1 = same_conv(2, 16, 5, 2, 34)  # 17 x 17
    size1p = size1 // 2  # max-pool 2: 8 x 8
    conv2, c2, size2 = same_conv(16, 32, 3, 1, size1p)  # 8 x 8
    flat = 32 * (size2 // 2) ** 2  # max-pool 2: 4 x 4 x 32
    w_out = torch.nn.Linear(flat, a.outputs)
    spike = FastSigmoidSpike.apply
    pool = torch.nn.functional.max_pool2d

    def run(x):
        T, B = x.shape[0], x.shape[1]
        frames = x.reshape(T, B, 34, 34, 2).permute(0, 1, 4, 2, 3)  # channels-last data, NCHW for torch
        v1 = x.new_zeros(B, 16, size1, size1)
        s1 = torch.zeros_like(v1)
        v2 = x.new_zeros(B, 32, size2, size2)
        s2 = torch.zeros_like(v2)
        y = x.new_zeros(B, a.outputs)
        total = x.new_zeros(B, a.outputs)
        for t in range(T):
            v1 = 0.9 * v1 + c1(frames[t]) - s1
            s1 = spike(v1 - 1.0)
            v2 = 0.9 * v2 + c2(pool(s1, 2)) - s2
            s2 = spike(v2 - 1.0)
            y = 0.9 * y + w_out(pool(s2, 2).flatten(1))
            total = total + y
        return total / T

    return [conv1, conv2, w_out], run


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
    modules, run = conv_model(a) if a.conv else snntorch_model(a) if a.impl == "snntorch" else plain_model(a)
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
        "impl": a.impl + ("-hoisted" if a.hoist and a.impl == "torch" else "") + ("-conv" if a.conv else ""),
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
