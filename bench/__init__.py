"""`make bench`: the benchmark suite. It measures and prints; it asserts nothing.

Run with `python -m bench --help`. Modules: `suite` runs the phases in order, `stack`
starts the real processes, `load` is the HTTP load generator (its own process), `bare` the
bare aio-pika chain, `fill` the stored tasks, `report` the table and the JSON.

It is not a test tier (pytest does not collect it) but borrows the tests' helpers: processes,
readiness, keys and /proc readings from `tests.support`, and `tests.fakes.ports` in `listing`.
"""
