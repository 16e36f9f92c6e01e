"""Job bodies, one per job, each named for its job (``medembed/jobs/<name>.py``): ``body(cfg, manifest) -> counts``,
the wiring of stages and libraries for one run. The registry that lists them, the runner, the CLI and the
job-API client live above, in ``medembed.app``; nothing here imports them.
"""
