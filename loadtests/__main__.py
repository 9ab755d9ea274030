"""`python -m loadtests`: the same command as `meshsre loadtest`."""

from loadtests.cli import loadtest

loadtest(prog_name="python -m loadtests")
