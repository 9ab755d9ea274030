"""SLO reports of a run, and the nightly job that produces one.

``meshsre report RUN_DIR`` reads the run records under RUN_DIR (load tests, chaos experiments
and drills, the alert notifications) and Prometheus over the run's span, and writes
``slo-report.json`` (the source), ``slo-report.html`` (self-contained, charts inline) and
``slo-report.md``; ``make nightly`` runs the whole chain and ends with one
(``reports.nightly``). The entry point for code is ``reports.report.make_report``.

Nothing is imported here: ``meshsre serve`` loads the CLI that registers these commands and
must not pay for Prometheus clients and templates it never uses.

    $ meshsre report reports/out/20261124T010000Z-nightly --prometheus http://127.0.0.1:9090
"""
