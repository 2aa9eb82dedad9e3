"""Demo sweep: gradual magnitude pruning of a 64-300-100-10 MLP on scikit-learn's bundled
digits (no download): sparsity {0, 0.5, 0.8, 0.9, 0.95} x 3 seeds.

Run:
    jaxcomp sweep configs/demo_sweep.py --out runs/demo && jaxcomp report runs/demo
(or ./demo.sh). Sparsity and seed are vector keys, so all 15 runs train together in one
vmapped program (1 compile); the report prints mean ± std over seeds per sparsity and
writes accuracy-vs-size plots with the Pareto front.
Expected: test accuracy about 0.97-0.98 up to 80-90% sparsity, a drop of a point or
more at 95%; well under a minute on 2 idle CPU cores.
"""

from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import product


def get_config():
    c = base_config()
    c.name = "demo_sweep"
    c.data.name = "digits"
    c.model.name = "mlp"  # 64-300-100-10 (the MLP's default widths on 8x8 inputs)
    c.train.epochs = 12
    c.train.batch_size = 64
    c.train.learning_rate = 3e-3
    c.prune.method = "magnitude"
    c.prune.schedule = "gradual"  # Zhu & Gupta: 0 -> sparsity over the first 75% of steps
    c.prune.frequency = 10
    return c


def get_sweep():
    return product({"prune.sparsity": [0.0, 0.5, 0.8, 0.9, 0.95]}, {"seed": [0, 1, 2]})
