"""The ROADEF/EURO 2012 machine reassignment problem (Google): instance files,
the exact evaluator, and the solver (local search + CP-SAT large neighbourhood
search). Nothing here imports ortools at module level; the solver does lazily.
"""
