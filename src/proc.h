/*
 * Worker processes: spawn with isolation, wait with deadlines, kill the
 * whole process group.  See DESIGN.md 2.2.
 *
 * A spawned process runs in its own session and process group, is killed
 * when the thread that spawned it dies (PR_SET_PDEATHSIG; the pool spawns
 * from one long-lived thread for that reason), cannot gain privileges,
 * dumps no core, optionally has an address-space limit, and inherits no
 * file descriptor but stdin/stdout (pipes to the caller) and stderr (a log
 * file opened for appending).  An exec failure is reported to the caller as
 * an error, not as an exit status.
 *
 * A wx__proc belongs to one thread at a time.
 */
#ifndef WX_PROC_H
#define WX_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <warmexec/error.h>

typedef struct wx__spawn_opts {
    char *const *argv;       /* argv[0]: a path, or a name looked up in PATH */
    char *const *envp;       /* the complete environment */
    const char *cwd;         /* working directory, or NULL to keep ours */
    const char *stderr_path; /* appended to; NULL = /dev/null */
    uint64_t mem_limit;      /* RLIMIT_AS in bytes; 0 = no limit */
} wx__spawn_opts;

typedef struct wx__proc {
    pid_t pid;  /* also its process group id; 0 when none */
    int in_fd;  /* write end of its stdin, non-blocking, or -1 */
    int out_fd; /* read end of its stdout, non-blocking, or -1 */
    bool reaped;
    int status; /* wait status, once reaped */
} wx__proc;

/*
 * Start a process.  WX_ESTART when the program cannot be executed (the
 * message names it and the reason), WX_EIO for other failures.  On
 * failure nothing is left running and `*p` holds no resources.
 */
int wx__spawn(const wx__spawn_opts *o, wx__proc *p, wx_error *err);

/*
 * Reap the process if it has exited, waiting at most until `deadline`.
 * Returns 0 once reaped (status in p->status), or WX_ETIMEDOUT.
 */
int wx__proc_wait(wx__proc *p, int64_t deadline, wx_error *err);

/* Send `sig` to the process group (and the process). */
void wx__proc_signal(wx__proc *p, int sig);

/*
 * End the process for good: close its stdin, SIGTERM the group, wait up to
 * `grace_ms`, then SIGKILL the group and reap.  Closes the fds.
 */
void wx__proc_stop(wx__proc *p, int grace_ms);

/* Close the pipes (idempotent). */
void wx__proc_close_fds(wx__proc *p);

/*
 * Describe a wait status: "exited with status 3", "killed by signal 9
 * (SIGKILL)".  Writes at most `max` bytes into `out`.
 */
void wx__describe_status(int status, char *out, size_t max);

#endif
