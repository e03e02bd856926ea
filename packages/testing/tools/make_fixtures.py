#!/usr/bin/env python3
"""Writes gradient fixtures in the schema of ../fixtures/README.md, solved in float64 by PyTorch
autograd from the equations in that README (independently of spikeflow's TypeScript code), with
LTC-SN fixtures into OUT_DIR/ltc and e-prop fixtures into OUT_DIR/eprop (the additions in
../fixtures-generated/README.md).

    python3 make_fixtures.py OUT_DIR

Needs torch (Debian: apt-get install python3-torch). spikeflow's tests never run this script;
they read the JSON it writes. Each problem is re-drawn until no membrane comes within 1e-4 of
its threshold, so float32 reproduces the spikes exactly.
"""
import json
import math
import os
import sys

import torch

torch.set_default_dtype(torch.float64)


def normal_pdf(x, mu, sd):
    return torch.exp(-((x - mu) ** 2) / (2 * sd * sd)) / (sd * math.sqrt(2 * math.pi))


def surrogate(cfg):
    name = cfg["name"]

    def deriv(x):
        if name == "fast_sigmoid":
            return 1.0 / (1.0 + cfg["slope"] * x.abs()) ** 2
        if name == "sigmoid":
            s = torch.sigmoid(cfg["slope"] * x)
            return cfg["slope"] * s * (1 - s)
        if name == "arctan":
            return (cfg["alpha"] / 2) / (1 + (math.pi / 2 * cfg["alpha"] * x) ** 2)
        if name == "triangle":
            return cfg["gamma"] * torch.clamp(1 - x.abs() / cfg["width"], min=0)
        if name == "multi_gaussian":
            sig, h, wide = cfg["sigma"], cfg["height"], cfg["scale"] * cfg["sigma"]
            return cfg["gamma"] * ((1 + h) * normal_pdf(x, 0.0, sig) - h * normal_pdf(x, sig, wide) - h * normal_pdf(x, -sig, wide))
        raise ValueError(name)

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * deriv(x)

    return Spike.apply


def ltc_step(l, p, st, cur, spike):
    """One LTC-SN step (Yin, Corradi & Bohte 2023): gated membrane update, gated threshold adaptation."""
    alpha = torch.sigmoid(torch.cat([cur, st["u"]], 1) @ p["alpha_W"] + p["alpha_b"])
    if l["threshold"] == "adaptive":
        rho = torch.sigmoid(torch.cat([cur, st["b"]], 1) @ p["rho_W"] + p["rho_b"])
        b = rho * st["b"] + (1 - rho) * st["s"]
        thr = l["b0"] + l["beta"] * b
    else:
        b = st["b"]
        thr = l["theta"]
    v = st["u"] + alpha * (cur - st["u"])
    s = spike(v - thr)
    u = (1 - s) * v
    return {"u": u, "s": s, "b": b}, v - thr


def zero_state(l, B):
    keys = ("u", "s", "b") if l["neuron"] == "ltc" else ("v", "s", "a")
    return {n: torch.zeros(B, l["size"]) for n in keys}


def run(problem, params, inputs, targets, k=None, detach_recurrent=False, feedback=None):
    """Loss, readout, spikes, final state; with k, all state is detached at steps k, 2k, ...

    detach_recurrent: the recurrent spikes s_{t-1} enter the current as constants (the paths
    e-prop drops). feedback: a matrix B [H][O] that the readout's backward pass uses instead of
    W_out (random-feedback e-prop); the readout's own gradient stays exact."""
    spike = surrogate(problem["surrogate"])
    T, B = problem["sizes"]["steps"], problem["sizes"]["batch"]
    states = [zero_state(l, B) for l in problem["layers"]]
    readout, ro = problem["readout"], params["readout"]
    y = torch.zeros(B, problem["sizes"]["outputs"])
    ys, spikes, margins = [], [[] for _ in problem["layers"]], []
    for t in range(T):
        if k is not None and t > 0 and t % k == 0:
            states = [{n: v.detach() for n, v in st.items()} for st in states]
            y = y.detach()
        x = inputs[t]
        for i, (l, p) in enumerate(zip(problem["layers"], params["layers"])):
            st = states[i]
            cur = x @ p["W"] + p["b"]
            if l["recurrent"]:
                cur = cur + (st["s"].detach() if detach_recurrent else st["s"]) @ p["W_rec"]
            if l["neuron"] == "ltc":
                states[i], margin = ltc_step(l, p, st, cur, spike)
                margins.append(margin.abs().min().item())
                spikes[i].append(states[i]["s"])
                x = states[i]["s"]
                continue
            r = st["s"].detach() if l["reset_detach"] else st["s"]
            v = l["beta"] * st["v"] + cur - l["threshold"] * r
            if l["neuron"] == "alif":
                a = l["rho"] * st["a"] + st["s"]
                thr = l["threshold"] + l["beta_a"] * a
            else:
                a = st["a"]
                thr = l["threshold"]
            s = spike(v - thr)
            margins.append((v - thr).abs().min().item())
            states[i] = {"v": v, "s": s, "a": a}
            spikes[i].append(s)
            x = s
        if readout.get("from") == "membrane":
            x = states[-1]["u" if problem["layers"][-1]["neuron"] == "ltc" else "v"]
        if readout.get("kind") == "ltc":
            d = x @ ro["W"] + ro["b"]
            kappa = torch.sigmoid(torch.cat([d, y], 1) @ ro["W_kappa"] + ro["b_kappa"])
            y = y + kappa * (d - y)
        elif feedback is not None:
            y = readout["kappa"] * y + FeedbackMatMul.apply(x, ro["W"], feedback) + ro["b"]
        else:
            y = readout["kappa"] * y + x @ ro["W"] + ro["b"]
        ys.append(y)
    Y = torch.stack(ys)
    name = problem["loss"]["name"]
    if name == "ce_mean":
        loss = torch.nn.functional.cross_entropy(Y.mean(0), targets)
    elif name == "ce_every_step":
        loss = torch.stack([torch.nn.functional.cross_entropy(Y[t], targets) for t in range(T)]).mean()
    elif name == "mse_every_step":
        loss = ((Y - targets) ** 2).mean()
    elif name == "mse_last":
        loss = ((Y[-1] - targets) ** 2).mean()
    else:
        raise ValueError(name)
    return loss, Y, spikes, states, min(margins)


class FeedbackMatMul(torch.autograd.Function):
    """s @ W forward; backward: ds = dy @ B^T (B replaces W), dW = s^T @ dy (exact)."""

    @staticmethod
    def forward(ctx, s, w, b):
        ctx.save_for_backward(s, b)
        return s @ w

    @staticmethod
    def backward(ctx, dy):
        s, b = ctx.saved_tensors
        return dy @ b.T, s.T @ dy, None


def tolist(x):
    return x.detach().tolist()


def gate(g, size, scale):
    """A gate [x ; state]·W + b of an LTC neuron or readout, W [2·size, size], uniform in ±scale."""
    return (torch.rand(2 * size, size, generator=g) * 2 - 1) * scale, (torch.rand(size, generator=g) * 2 - 1) * scale * 0.5


def make(problem, seed, tbptt_k=None, density=0.4, scale=1.0, inputs_kind="spikes", gate_scale=1.5, eprop=False):
    g = torch.Generator().manual_seed(seed)
    sz = problem["sizes"]
    for attempt in range(200):
        params = {"layers": [], "readout": {}}
        fan_in = sz["inputs"]
        for l in problem["layers"]:
            p = {
                "W": (torch.rand(fan_in, l["size"], generator=g) * 2 - 1) * scale * 1.5,
                "b": (torch.rand(l["size"], generator=g) * 2 - 1) * 0.3,
            }
            if l["recurrent"]:
                p["W_rec"] = (torch.rand(l["size"], l["size"], generator=g) * 2 - 1) * 0.8
            if l["neuron"] == "ltc":
                p["alpha_W"], p["alpha_b"] = gate(g, l["size"], gate_scale)
                if l["threshold"] == "adaptive":
                    p["rho_W"], p["rho_b"] = gate(g, l["size"], gate_scale)
            params["layers"].append(p)
            fan_in = l["size"]
        params["readout"] = {"W": torch.randn(fan_in, sz["outputs"], generator=g) * 0.5, "b": torch.randn(sz["outputs"], generator=g) * 0.1}
        if problem["readout"].get("kind") == "ltc":
            params["readout"]["W_kappa"], params["readout"]["b_kappa"] = gate(g, sz["outputs"], gate_scale)
        name = problem["loss"]["name"]
        if inputs_kind == "add":
            # The adding problem: channel 0 analog values in [0, 1), channel 1 marks one step in each
            # half of the sequence; the target is the sum of the two marked values.
            assert sz["inputs"] == 2 and sz["outputs"] == 1 and name == "mse_last"
            T, B = sz["steps"], sz["batch"]
            values = torch.rand(T, B, generator=g)
            first = torch.randint(0, T // 2, (B,), generator=g)
            second = torch.randint(T // 2, T, (B,), generator=g)
            marks = torch.zeros(T, B)
            marks[first, torch.arange(B)] = 1.0
            marks[second, torch.arange(B)] = 1.0
            inputs = torch.stack([values, marks], 2)
            targets = (values * marks).sum(0).unsqueeze(1)
        else:
            inputs = (torch.rand(sz["steps"], sz["batch"], sz["inputs"], generator=g) < density).to(torch.float64)
            if name.startswith("ce"):
                targets = torch.randint(0, sz["outputs"], (sz["batch"],), generator=g)
            elif name == "mse_every_step":
                targets = torch.randn(sz["steps"], sz["batch"], sz["outputs"], generator=g)
            else:
                targets = torch.randn(sz["batch"], sz["outputs"], generator=g)
        leaves = [t for p in params["layers"] for t in p.values()] + list(params["readout"].values())
        for t in leaves:
            t.requires_grad_(True)
        loss, Y, spikes, states, margin = run(problem, params, inputs, targets)
        n_spikes = sum(float(torch.stack(s).sum()) for s in spikes)
        total = sum(torch.stack(s).numel() for s in spikes)
        if margin < 1e-3 or not (0.05 * total < n_spikes < 0.7 * total):
            continue
        grads = torch.autograd.grad(loss, leaves)
        it = iter(grads)
        g_layers = [{n: tolist(next(it)) for n in p} for p in params["layers"]]
        g_read = {n: tolist(next(it)) for n in params["readout"]}
        expected = {
            "loss": loss.item(),
            "readout": tolist(Y),
            "spikes": [tolist(torch.stack(s)) for s in spikes],
            "final_state": [
                {n: tolist(v) for n, v in st.items()}
                if l["neuron"] == "ltc"
                else {"v": tolist(st["v"]), "s": tolist(st["s"]), **({"a": tolist(st["a"])} if l["neuron"] == "alif" else {})}
                for st, l in zip(states, problem["layers"])
            ],
            "grads": {"layers": g_layers, "readout": g_read},
        }
        if tbptt_k:
            tl, *_ = run(problem, params, inputs, targets, k=tbptt_k)
            tg = iter(torch.autograd.grad(tl, leaves))
            expected["tbptt"] = {
                "k": tbptt_k,
                "grads": {"layers": [{n: tolist(next(tg)) for n in p} for p in params["layers"]], "readout": {n: tolist(next(tg)) for n in params["readout"]}},
            }
        if eprop:
            el, *_ = run(problem, params, inputs, targets, detach_recurrent=True)
            eg = iter(torch.autograd.grad(el, leaves))
            expected["eprop"] = {"grads": {"layers": [{n: tolist(next(eg)) for n in p} for p in params["layers"]], "readout": {n: tolist(next(eg)) for n in params["readout"]}}}
            B = (torch.rand(problem["layers"][-1]["size"], sz["outputs"], generator=g) * 2 - 1) * 0.7
            rl, *_ = run(problem, params, inputs, targets, detach_recurrent=True, feedback=B)
            rg = iter(torch.autograd.grad(rl, leaves))
            expected["eprop"]["random"] = {
                "feedback": tolist(B),
                "grads": {"layers": [{n: tolist(next(rg)) for n in p} for p in params["layers"]], "readout": {n: tolist(next(rg)) for n in params["readout"]}},
            }
        return {
            **problem,
            "dtype": "float64",
            "params": {"layers": [{n: tolist(t) for n, t in p.items()} for p in params["layers"]], "readout": {n: tolist(t) for n, t in params["readout"].items()}},
            "inputs": tolist(inputs),
            "targets": tolist(targets),
            "expected": expected,
        }
    raise RuntimeError(f"{problem['name']}: no draw with a safe threshold margin")


def layer(neuron, size, recurrent, reset_detach=False, beta=0.9, threshold=1.0, **extra):
    l = {"neuron": neuron, "size": size, "recurrent": recurrent, "beta": beta, "threshold": threshold, "reset": "subtract", "reset_detach": reset_detach}
    if neuron == "alif":
        l.update({"rho": extra.get("rho", 0.95), "beta_a": extra.get("beta_a", 1.8)})
    return l


PROBLEMS = [
    (dict(name="alif_then_lif", description="recurrent ALIF then recurrent LIF, arctan, CE on the mean readout",
          sizes=dict(batch=3, inputs=6, steps=14, outputs=3),
          layers=[layer("alif", 7, True, rho=0.9, beta_a=0.7), layer("lif", 5, True)],
          readout=dict(kappa=0.85), surrogate=dict(name="arctan", alpha=2.0), loss=dict(name="ce_mean")), 11, 3),
    (dict(name="ff_alif_sigmoid_every_step", description="feed-forward ALIF, sigmoid surrogate, CE at every step",
          sizes=dict(batch=4, inputs=5, steps=10, outputs=2),
          layers=[layer("alif", 6, False, beta=0.8, rho=0.85, beta_a=0.5)],
          readout=dict(kappa=0.9), surrogate=dict(name="sigmoid", slope=4.0), loss=dict(name="ce_every_step")), 12, 2),
    (dict(name="three_layer_mixed_mse", description="LIF, ALIF (detached reset), LIF; batch 1; MSE at every step",
          sizes=dict(batch=1, inputs=7, steps=12, outputs=2),
          layers=[layer("lif", 6, False, threshold=0.8), layer("alif", 5, True, reset_detach=True, rho=0.9, beta_a=1.0), layer("lif", 4, True, beta=0.7)],
          readout=dict(kappa=0.6), surrogate=dict(name="fast_sigmoid", slope=10.0), loss=dict(name="mse_every_step")), 13, 5),
    (dict(name="long_alif_mse_last", description="recurrent ALIF over 40 steps, triangle surrogate, MSE on the last step, window not dividing T",
          sizes=dict(batch=2, inputs=4, steps=40, outputs=1),
          layers=[layer("alif", 8, True, beta=0.95)],
          readout=dict(kappa=0.95), surrogate=dict(name="triangle", gamma=0.5, width=0.8), loss=dict(name="mse_last")), 14, 7),
    (dict(name="lif_low_threshold_ce_mean", description="recurrent LIF with beta 0.8 and threshold 0.5, CE on the mean readout",
          sizes=dict(batch=5, inputs=3, steps=16, outputs=4),
          layers=[layer("lif", 9, True, beta=0.8, threshold=0.5)],
          readout=dict(kappa=0.7), surrogate=dict(name="fast_sigmoid", slope=25.0), loss=dict(name="ce_mean")), 15, 4),
]


def ltc_layer(size, recurrent, threshold="adaptive", b0=0.1, beta=1.8, theta=0.5):
    l = {"neuron": "ltc", "size": size, "recurrent": recurrent, "threshold": threshold}
    l.update({"b0": b0, "beta": beta} if threshold == "adaptive" else {"theta": theta})
    return l


# The LTC-SN's own surrogate (byin-cwi/sFPTT's multi-Gaussian).
MULTI_GAUSSIAN = dict(name="multi_gaussian", sigma=0.3, height=0.15, scale=6, gamma=0.5)

# Problems with the LTC-SN neuron (plugin @spikeflow/neuron-ltc), written to OUT_DIR/ltc: a checker
# without that plugin can still run OUT_DIR itself. Entries: (problem, seed, tbptt k, make options).
LTC_PROBLEMS = [
    (dict(name="ltc_adaptive_ltc_readout", description="recurrent adaptive-threshold LTC-SN, LTC readout with a learned update gate, MSE on the last step",
          sizes=dict(batch=3, inputs=4, steps=20, outputs=2),
          layers=[ltc_layer(5, True, b0=0.2, beta=1.2)],
          readout=dict(kind="ltc"), surrogate=MULTI_GAUSSIAN, loss=dict(name="mse_last")), 21, 6, {}),
    (dict(name="ltc_fixed_membrane_add", description="adding problem: analog value and marker inputs, recurrent fixed-threshold LTC-SN read from its membrane by an instantaneous linear readout (kappa 0), MSE on the last step",
          sizes=dict(batch=3, inputs=2, steps=24, outputs=1),
          layers=[ltc_layer(4, True, threshold="fixed", theta=0.4)],
          readout=dict(kappa=0.0, **{"from": "membrane"}), surrogate=MULTI_GAUSSIAN, loss=dict(name="mse_last")), 22, 8, {"inputs_kind": "add"}),
    (dict(name="ltc_then_lif_ce_every_step", description="feed-forward adaptive LTC-SN then recurrent LIF, CE at every step",
          sizes=dict(batch=2, inputs=5, steps=12, outputs=3),
          layers=[ltc_layer(6, False), layer("lif", 4, True, beta=0.85, threshold=0.6)],
          readout=dict(kappa=0.8), surrogate=MULTI_GAUSSIAN, loss=dict(name="ce_every_step")), 23, 5, {}),
]

# Problems for e-prop (plugin @spikeflow/rule-eprop), written to OUT_DIR/eprop: one hidden layer, a
# loss that decomposes over time, and expected.eprop = the gradient with the recurrent spike path
# detached (e-prop's with symmetric feedback), plus expected.eprop.random = the same with a random
# feedback matrix B in the readout's backward pass.
TRIANGLE = dict(name="triangle", gamma=0.3, width=1.0)
EPROP_PROBLEMS = [
    (dict(name="eprop_ff_lif_detached", description="feed-forward LIF, detached reset, Bellec's triangle pseudo-derivative, CE at every step (e-prop = BPTT)",
          sizes=dict(batch=3, inputs=6, steps=15, outputs=3),
          layers=[layer("lif", 5, False, reset_detach=True, beta=0.85)],
          readout=dict(kappa=0.8), surrogate=TRIANGLE, loss=dict(name="ce_every_step")), 31, None, {"eprop": True}),
    (dict(name="eprop_ff_alif_attached", description="feed-forward ALIF, reset attached, fast sigmoid, MSE at every step (e-prop = BPTT)",
          sizes=dict(batch=2, inputs=5, steps=16, outputs=2),
          layers=[layer("alif", 6, False, beta=0.9, rho=0.9, beta_a=0.6)],
          readout=dict(kappa=0.85), surrogate=dict(name="fast_sigmoid", slope=10.0), loss=dict(name="mse_every_step")), 32, None, {"eprop": True}),
    (dict(name="eprop_rec_lif", description="recurrent LIF, reset attached, CE at every step",
          sizes=dict(batch=3, inputs=5, steps=20, outputs=3),
          layers=[layer("lif", 6, True, beta=0.9)],
          readout=dict(kappa=0.9), surrogate=dict(name="fast_sigmoid", slope=10.0), loss=dict(name="ce_every_step")), 33, None, {"eprop": True}),
    (dict(name="eprop_rec_alif_detached", description="recurrent ALIF as in Bellec et al.: detached reset, triangle pseudo-derivative (gamma 0.3), MSE at every step",
          sizes=dict(batch=2, inputs=4, steps=24, outputs=2),
          layers=[layer("alif", 7, True, reset_detach=True, beta=0.9, rho=0.95, beta_a=0.8)],
          readout=dict(kappa=0.9), surrogate=TRIANGLE, loss=dict(name="mse_every_step")), 34, None, {"eprop": True}),
    (dict(name="eprop_rec_alif_mse_last", description="recurrent ALIF, reset attached, one loss term at the last step",
          sizes=dict(batch=3, inputs=4, steps=30, outputs=1),
          layers=[layer("alif", 6, True, beta=0.95, rho=0.9, beta_a=0.5)],
          readout=dict(kappa=0.95), surrogate=dict(name="sigmoid", slope=4.0), loss=dict(name="mse_last")), 35, None, {"eprop": True}),
]

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    for sub, problems in (("", [(p, s, k, {}) for p, s, k in PROBLEMS]), ("ltc", LTC_PROBLEMS), ("eprop", EPROP_PROBLEMS)):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        for problem, seed, k, options in problems:
            fx = make(problem, seed, k, **options)
            with open(os.path.join(out, sub, problem["name"] + ".json"), "w") as f:
                json.dump(fx, f)
            print(os.path.join(sub, problem["name"]), "loss", fx["expected"]["loss"])
