"""Planning: from the arrays of a call to a :class:`~.plan.ConvPlan` (every decision taken once).

- :mod:`.validate`: the arrays and arguments checked, the backend found, the :class:`~gemmconv.core.spec.ConvSpec`.
- :mod:`.plan`: :class:`~.plan.ConvPlan` (every pass), :func:`~.plan.resolve` (the strategy), the forward plan,
  the one place that pads (:func:`~.plan.runner_for`) and the plan cache.
- :mod:`.passes`: the plans of grad_input, grad_weight and the transposed convolution.
- :mod:`.caches`: every cache, and :func:`~.caches.clear_caches`.
"""
