"""Dynamics: the ODEs of one-pass SGD in overlap space and the direct SGD simulator.

May import :mod:`landscape.kernels` and :mod:`landscape.model`. :mod:`ode` is the entry point
(:func:`integrate_ode`, :func:`run_flow`); :mod:`ode_solvers`, :mod:`compiled_flow`, :mod:`dop853`
and :mod:`fourpoint_flow` are its solvers (section 3 of docs/theory.md); :mod:`sgd` simulates SGD at
finite ``d``; both return a :class:`trajectory.Trajectory`.
"""
