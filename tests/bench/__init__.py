"""`make bench`: the benchmark suite. It measures and prints; it asserts nothing.

Run with `python -m tests.bench --help`. Modules: `suite` runs the phases in order, `stack`
starts the real processes, `load` is the HTTP load generator (its own process), `bare` the
bare aio-pika chain, `fill` the stored tasks, `report` the table and the JSON.
"""
