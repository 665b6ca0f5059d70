#!/bin/sh
# The executable of every HTCondor job of profiles/htcondor (resource job_wrapper).
# Snakemake hands the job "[precommand &&] PYTHON -m snakemake ARGS..." (or only ARGS).
# With any storage plugin installed, the precommand is a `pip install` of the plugins
# on the execute point, which snakemake-executor-plugin-htcondor 0.3 mangles into
# "python3 install ..."; and execute points of a shared-software site need no install.
# So: run PYTHON -m snakemake ARGS, and nothing before it.
for word in "$@"; do
  case "$word" in
    -m) seen_m=1 ;;
    snakemake) [ -n "$seen_m" ] && found=1 && break ;;
    *) seen_m= ;;
  esac
done
if [ -z "$found" ]; then
  exec "${SWIFT_RULES_PYTHON:-python3}" -m snakemake "$@"
fi
while [ $# -ge 3 ]; do
  if [ "$2" = "-m" ] && [ "$3" = "snakemake" ]; then
    exec "$@"
  fi
  shift
done
echo "htcondor-job-wrapper: cannot find 'PYTHON -m snakemake' in: $*" >&2
exit 2
