"""The application layer, the top of the house: the job registry (``registry``), the runner that runs a job from
the command line (``runner``), the Ray job-API client (``submit``) and the ``medembed`` command line (``cli``).

Everything else sits below: job bodies (``medembed.jobs``), stages (``medembed.stages``, ``medembed.pipeline``),
libraries, runtime and contracts; none of them imports this package (``tests/unit/test_layers.py``).
"""
