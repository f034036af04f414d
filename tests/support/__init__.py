"""What the integration tests and the benchmarks share: starting the local stack, waiting, reading the stores."""
