# Environment for running ackd with Open MPI on a workstation or CI machine.
# Sourced by scripts/demo and .ci/run; on a cluster, the job templates set their own.
export OMPI_MCA_rmaps_base_oversubscribe=1        # more ranks than cores is fine for tests
# Large messages between ranks of a node: Open MPI's shared-memory transport copies them in one
# step with cross-memory attach (CMA) where the kernel allows it. Containers often forbid it, and
# then a message moves in 32 KiB fragments, each needing an MPI call on both ranks; gradient
# buckets sent during backward (one MPI call per layer) then wait for the optimizer step. Without
# CMA, 256 KiB fragments recover most of the overlap (docs/PERFORMANCE.md, bench/scaling).
if [ -x /usr/bin/python3 ] && /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/cma-works" 2>/dev/null; then
  export OMPI_MCA_btl_vader_single_copy_mechanism=cma
else
  export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_btl_vader_max_send_size=262144
fi
export OMPI_MCA_mpi_yield_when_idle=1
# PMIx authenticates its clients through munge when libmunge is installed (it is, for
# slurm-local); with munged stopped but its socket file left behind, every mpiexec then
# retries the socket for 2.3 s. One user on one machine needs no munge credential.
export PMIX_MCA_psec=native
if [ "$(id -u)" -eq 0 ]; then                     # Open MPI refuses root unless told
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
