"""Reads NIR files with the NIR library (type checking on), as snnTorch's and Norse's importers do
first, and prints each graph's nodes. Needs Python 3 with numpy, h5py and `nir` (pip install nir).

    python3 plugins/nir/tools/check-with-nir.py model.nir [more.nir ...]
"""
import sys

import nir
import numpy as np


def show(graph, indent="  "):
    for name, node in sorted(graph.nodes.items()):
        arrays = {k: (str(v.dtype), v.shape) for k, v in vars(node).items() if isinstance(v, np.ndarray)}
        print(f"{indent}{name}: {type(node).__name__} {arrays}")
        if isinstance(node, nir.NIRGraph):
            show(node, indent + "  ")


for path in sys.argv[1:]:
    g = nir.read(path)
    print(f"{path}: read by nir {getattr(nir, 'version', '?')}, edges {g.edges}")
    show(g)
