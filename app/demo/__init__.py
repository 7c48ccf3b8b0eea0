"""Demo and benchmark data, and simulated sync workers: the seeder, the simulated engine's plans
(pure), the in-process simulator that `syncstatus demo` runs, and `syncstatus worker`, the
same plans driven through the public GraphQL mutations from a separate process.
"""
