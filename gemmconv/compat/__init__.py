"""Drop-in replacements of other libraries' convolutions, built on gemmconv's public functions.

- :mod:`gemmconv.compat.sigpy`: sigpy's ``convolve``, ``convolve_data_adjoint`` and ``convolve_filter_adjoint``,
  and :func:`~gemmconv.compat.sigpy.install` to route sigpy's own through them.

Importing gemmconv imports none of these, and none imports the library it stands in for until asked to.
"""
