/*
 * Distributed mode on MPI (DESIGN.md 8, docs/distributed.md): the same
 * study run launched by mpirun or srun.  Rank 0 owns the study, the result
 * cache, the CAS and the results database and dispatches through the MPI
 * service; ranks 1..N-1 serve tasks in a local warm pool and send results
 * back, artifacts included.
 *
 * Part of libwarmexec_mpi, built when Open MPI is present; this header
 * does not need mpi.h.  MPI is initialised for serialized threading (one
 * thread at a time calls MPI: here, the service's communication thread).
 */
#ifndef WARMEXEC_MPI_H
#define WARMEXEC_MPI_H

#include <stdbool.h>

#include <warmexec/config.h>
#include <warmexec/env.h>
#include <warmexec/error.h>
#include <warmexec/service.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where this process sits in the MPI job. */
typedef struct wx_mpi_world {
    int rank, size;
} wx_mpi_world;

/*
 * True when an MPI launcher started this process (Open MPI's mpirun sets
 * OMPI_COMM_WORLD_SIZE; PMIx and PMI launchers such as srun set PMIX_RANK
 * or PMI_RANK).  Without one, warmexec runs locally and never starts MPI.
 */
WX_API bool wx_mpi_launched(void);

/* MPI_Init_thread (serialized).  WX_EINTERNAL when MPI refuses. */
WX_API int wx_mpi_init(int *argc, char ***argv, wx_mpi_world *out,
                       wx_error *err);

/* MPI_Finalize. */
WX_API void wx_mpi_finalize(void);

/* Rank 0: what the MPI service needs (zero = defaults). */
typedef struct wx_mpi_options {
    /*
     * Rank 0's settings (borrowed), sent to every worker rank, which
     * applies them over its own except those naming files on its machine
     * (home, native_runner, python, python_runner).  NULL: none are sent.
     */
    const wx_config *cfg;
    /* Tasks outstanding per worker rank; 0 = twice the rank's workers. */
    int window;
} wx_mpi_options;

/*
 * Rank 0: a wx_service_maker (wx_run_options.make_service; `user` is a
 * wx_mpi_options *, or NULL).  It waits for every worker rank to say it is
 * ready; a rank that could not start (its reason is in the message) makes
 * it fail with WX_ESTART.  `*parallel` becomes the number of tasks the
 * ranks run at once.  Each task goes to the rank with the fewest
 * outstanding, up to the window; results come back with their artifacts
 * and are stored here.  Rank 0 checks the result cache before sending a
 * task.
 */
WX_API int wx_mpi_service_maker(void *user, wx_env *env, wx_service **out,
                                int *parallel, wx_error *err);

/*
 * Rank 0: tell every worker rank to finish (a no-op once done).  Freeing
 * the MPI service does it; call it also when the run failed before the
 * service existed, or the workers wait forever.
 */
WX_API void wx_mpi_stop_workers(void);

/*
 * Ranks 1..N-1: serve tasks from rank 0 with a local warm pool until rank
 * 0 says stop.  `cfg` (borrowed) receives rank 0's settings first (see
 * wx_mpi_options); its home holds the bundle store.  With `setup`
 * non-NULL (this rank could not prepare, say, the bundle), report its
 * message to rank 0 instead and wait for the stop.  0 also when rank 0
 * was told of a failure to start (it reports it); otherwise the status
 * of a failure to talk to rank 0.
 */
WX_API int wx_mpi_serve(wx_config *cfg, const wx_error *setup,
                        wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
