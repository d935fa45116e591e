"""An example taskproc task type, `thumbnail`, registered by this package's entry point."""
