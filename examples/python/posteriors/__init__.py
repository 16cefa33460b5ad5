"""W7: six real posteriors from posteriordb (Stan's posterior database) as
boltz energies written in JAX and in torch.

Each posterior is sampled in Stan's unconstrained space: every parameter
declared ``<lower=0>`` in the Stan model is ``exp(u)`` of an unconstrained
``u``, and the log density gains the log-Jacobian ``u``. The energy is the
negative log density of the unconstrained row, ``F(u) = -log p(u)``, at
beta = 1 (constants of the normal densities kept; Stan's ``~`` drops them,
which changes nothing but log Z). Draws go back to the constrained space
(:meth:`Posterior.constrain`) to be held against posteriordb's reference
draws (Stan NUTS, 10 chains x 1000 draws).

    from posteriors import load
    post = load("kidiq-kidscore_momhsiq")          # data from data/posteriordb
    energy = post.jax_energy()                      # or post.torch_energy()
    draws, report = boltz.sample(energy, sampler="nuts", chains=4)
    checks = post.check(post.constrain(draws))      # means and sds against the reference

The densities (one function per posterior and framework) are in
:mod:`posteriors.jax_densities` and :mod:`posteriors.torch_densities`; the
data, parameter names and reference draws in :mod:`posteriors.data`.
"""

from .data import NAMES, Posterior, load

__all__ = ["NAMES", "Posterior", "load"]
