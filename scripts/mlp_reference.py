"""Independent numpy values of the suite `mlp` energy, pinned in tests/energy.rs.

F(x, y) = h2 . w2 + b2 + 0.5 |y|^2, h2 = silu(h1 w1 + b1), h1 = silu([x ; y] w0 + b0),
in float64 from the float32 weights. Points: y_j = 0.1 * ((j * 7 + 3 * r) % 11 - 5), row r = 0..3,
contexts = rows 0..3 of data/mlp/context.npy.
Run: python3 scripts/mlp_reference.py
"""
import numpy as np

d = "data/mlp/"
w = [np.load(d + f"w{i}.npy").astype(np.float64) for i in range(3)]
b = [np.load(d + f"b{i}.npy").astype(np.float64) for i in range(3)]
x = np.load(d + "context.npy").astype(np.float64)[:4]
y = np.array([[0.1 * ((j * 7 + 3 * r) % 11 - 5) for j in range(32)] for r in range(4)])
silu = lambda a: a / (1.0 + np.exp(-a))
h1 = silu(np.concatenate([x, y], axis=1) @ w[0] + b[0])
h2 = silu(h1 @ w[1] + b[1])
f = (h2 @ w[2] + b[2])[:, 0] + 0.5 * (y * y).sum(axis=1)
for v in f:
    print(repr(float(v)))
