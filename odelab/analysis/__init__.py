"""What users do with derivatives: check them, diagnose solves, inspect adjoints, spectra,
gradient fields and ensembles, training, bilevel problems. Everything here uses the public
derivative functions (`odelab.derivatives`) and the solve front (`odelab.solve`), never their
internals.

    check       check_gradient, GradientReport
    diagnose    what the solves inside a user's function look like, measured
    inspect     inspect_adjoint: the adjoint step by step
    spectra     hessian_spectrum (dense, Lanczos, Hutchinson, SLQ), Spectrum
    fields      gradient_field, solve_ensemble, device sharding
    fit         fit (optax), FitResult, newton_krylov
    bilevel     nested problems (4D-Var): argmin, unrolled and implicit hypergradients
"""
