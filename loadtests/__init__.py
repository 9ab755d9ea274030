"""Load tests of the mesh: a Locust workload of signing agents, open-model pacing, coordinated
omission correction, SLO-derived thresholds and a schema-versioned run record.

Modules that import Locust (the two locustfiles, ``hooks``, ``harness``, ``shapes``,
``verdict``) are only ever loaded inside a Locust process: importing Locust monkey-patches the
interpreter with gevent, which deadlocks other tools (a Chaos Toolkit activity, pytest).
Everything else here is plain Python, and other tools start Locust through ``loadtests.run``
as a subprocess. The run record (``record``) is what the report builder reads.

    $ locust -f loadtests/locustfile.py                      # web UI
    $ meshsre loadtest --host URL --users 20 --rate 50 --duration 60s --shape steady
"""
