"""The `taskproc` command line: operators' and users' verbs and the ops tools, on the top floor (it
may import every process package); `cli.main` is the entry point."""
