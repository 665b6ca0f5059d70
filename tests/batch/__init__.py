"""The batch systems that the backend tests run on, a pytest plugin each (conftest's
``pytest_plugins``): ``htcondor`` (a personal pool), ``slurm`` (a one-node cluster),
``dirac`` (a DiracX server and a simulated site). Each finds or starts its system,
gives the commands to ask it, and provides ``<name>_profile_run``: the reference workflow
run through profiles/<name>, beside the local run it must equal
(helpers.assert_profile_run_equals_local_run, called by the backend's file).
The backend's own checks stay in tests/test_<name>.py."""
