"""Writes NIR files with the NIR library itself (nir.write), in the forms snnTorch and Norse write,
for @spikeflow/nir's tests (test-data/). Needs Python 3 with numpy, h5py and the `nir` package
(pip install nir; the files in test-data were made with NIR 1.0.7 from neuromorphs/NIR@7232ada).

    python3 plugins/nir/tools/make-test-files.py plugins/nir/test-data
"""
import sys
import numpy as np
import nir

if not hasattr(nir, "version"):  # a source checkout without its generated version module
    nir.version = "1.0.7"

out = sys.argv[1]
rng = np.random.default_rng(5)
dt = 1e-4


def w(o, i, s):
    return (rng.uniform(-1, 1, (o, i)) * s).astype(np.float32)


def b(o, s):
    return (rng.uniform(-1, 1, o) * s).astype(np.float32)


def leaky(n, beta, thr=1.0):
    # snnTorch's export of Leaky: tau = dt/(1 - beta), r = tau/dt; n a size or a shape.
    tau = np.full(n, dt / (1 - beta), dtype=np.float32)
    return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(n, np.float32), v_threshold=np.full(n, thr, np.float32), v_reset=np.zeros(n, np.float32))


# snnTorch: Leaky, then RLeaky flattened as export_to_nir writes it (1.lif <-> 1.w_rec), then Leaky.
g = nir.NIRGraph(
    nodes={
        "input": nir.Input(input_type=np.array([6])),
        "0": nir.Affine(weight=w(7, 6, 0.9), bias=b(7, 0.3)),
        "1.lif": leaky(7, 0.85),
        "1.w_rec": nir.Linear(weight=w(7, 7, 0.6)),
        "2": nir.Affine(weight=w(3, 7, 0.8), bias=b(3, 0.2)),
        "3": leaky(3, 0.9),
        "output": nir.Output(output_type=np.array([3])),
    },
    edges=[("input", "0"), ("0", "1.lif"), ("1.lif", "1.w_rec"), ("1.w_rec", "1.lif"), ("1.lif", "2"), ("2", "3"), ("3", "output")],
)
nir.write(f"{out}/snntorch-rleaky-flat.nir", g)

# snnTorch: Synaptic x2 (CubaLIF: tau_syn = dt/(1 - alpha), w_in = tau_syn/dt, tau_mem = dt/(1 - beta), r = tau_mem/dt).
def synaptic(n, alpha, beta):
    ts = np.full(n, dt / (1 - alpha), np.float32)
    tm = np.full(n, dt / (1 - beta), np.float32)
    return nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=tm / dt, v_leak=np.zeros(n, np.float32), v_threshold=np.ones(n, np.float32), v_reset=np.zeros(n, np.float32), w_in=ts / dt)


g = nir.NIRGraph(
    nodes={
        "input": nir.Input(input_type=np.array([6])),
        "0": nir.Affine(weight=w(8, 6, 1.5), bias=b(8, 0.3)),
        "1": synaptic(8, 0.7, 0.85),
        "2": nir.Affine(weight=w(3, 8, 1.5), bias=np.full(3, 0.4, np.float32)),
        "3": synaptic(3, 0.5, 0.9),
        "output": nir.Output(output_type=np.array([3])),
    },
    edges=[("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")],
)
nir.write(f"{out}/snntorch-synaptic.nir", g)

# Norse: an input of shape (1, 2, 3) flattened, LIFBoxCell (tau = 1/tau_mem_inv = 0.01 s, r = 1), an LI readout; used with dt = 1e-3.
g = nir.NIRGraph(
    nodes={
        "input": nir.Input(input_type=np.array([1, 2, 3])),
        "flat": nir.Flatten(input_type={"input": np.array([1, 2, 3])}, start_dim=0, end_dim=-1),
        "0": nir.Affine(weight=w(8, 6, 6), bias=b(8, 1)),
        "1": nir.LIF(tau=np.full(8, 0.01, np.float32), r=np.ones(8, np.float32), v_leak=np.zeros(8, np.float32), v_threshold=np.ones(8, np.float32), v_reset=np.zeros(8, np.float32)),
        "2": nir.Linear(weight=w(3, 8, 4)),
        "3": nir.LI(tau=np.full(3, 0.02, np.float32), r=np.ones(3, np.float32), v_leak=np.zeros(3, np.float32)),
        "output": nir.Output(output_type=np.array([3])),
    },
    edges=[("input", "flat"), ("flat", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")],
)
nir.write(f"{out}/norse-li.nir", g)
# snnTorch: a convolutional network (Conv2d padded by 1, Leaky on its [C, H, W] map, SumPool2d, Flatten, Affine, Leaky).
g = nir.NIRGraph(
    nodes={
        "input": nir.Input(input_type=np.array([2, 8, 8])),
        "0": nir.Conv2d(input_shape=(8, 8), weight=w(3 * 2 * 3 * 3, 1, 1.2).reshape(3, 2, 3, 3), stride=1, padding=1, dilation=1, groups=1, bias=b(3, 0.3)),
        "1": leaky((3, 8, 8), 0.8),
        "2": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "3": nir.Flatten(input_type={"input": np.array([3, 4, 4])}, start_dim=0, end_dim=-1),
        "4": nir.Affine(weight=w(4, 48, 0.6), bias=b(4, 0.2)),
        "5": leaky(4, 0.9),
        "output": nir.Output(output_type=np.array([4])),
    },
    edges=[("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "4"), ("4", "5"), ("5", "output")],
)
nir.write(f"{out}/snntorch-conv.nir", g)

for f in ["snntorch-rleaky-flat", "snntorch-synaptic", "norse-li", "snntorch-conv"]:
    nir.read(f"{out}/{f}.nir")
print("wrote and read back", out)
