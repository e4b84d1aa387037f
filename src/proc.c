/* Spawning and stopping worker processes. */
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "proc.h"

/* Bigger pipes mean fewer wake-ups for large frames. */
#define PIPE_SIZE (1 << 20)
#define CHILD_STACK (64 * 1024)

/* What the child reports through the error pipe when exec fails. */
typedef struct child_failure {
    int stage; /* index into stage_names */
    int err;   /* errno */
} child_failure;

static const char *const stage_names[] = {
    "setsid", "prctl", "setrlimit", "dup2", "open /dev/null", "chdir",
    "exec"};

enum { ST_SETSID, ST_PRCTL, ST_RLIMIT, ST_DUP2, ST_DEVNULL, ST_CHDIR, ST_EXEC };

/* Everything the child needs, prepared by the parent before clone(). */
typedef struct child_args {
    const wx__spawn_opts *o;
    int stdin_fd, stdout_fd, stderr_fd, err_fd;
    pid_t parent;
} child_args;

static void child_fail(int err_fd, int stage)
{
    child_failure f = {stage, errno};

    /* Best effort: the parent reads this or sees an empty pipe. */
    if (write(err_fd, &f, sizeof(f)) < 0)
        _exit(127);
    _exit(127);
}

/* Put `fd` at `target` without close-on-exec. */
static int move_fd(int fd, int target)
{
    if (fd == target)
        return fcntl(fd, F_SETFD, 0);
    return dup2(fd, target) < 0 ? -1 : 0;
}

static void child_reset_signals(void)
{
    sigset_t none;

    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void child_limits(const child_args *a)
{
    struct rlimit zero = {0, 0};

    if (setrlimit(RLIMIT_CORE, &zero) != 0)
        child_fail(a->err_fd, ST_RLIMIT);
    if (a->o->mem_limit) {
        struct rlimit as = {a->o->mem_limit, a->o->mem_limit};

        if (setrlimit(RLIMIT_AS, &as) != 0)
            child_fail(a->err_fd, ST_RLIMIT);
    }
}

/*
 * Runs in the child, sharing the parent's memory until exec (CLONE_VM |
 * CLONE_VFORK): only system calls, no allocation, no writes to shared
 * data.
 */
static int child_main(void *arg)
{
    const child_args *a = arg;

    const int err_fd = 3;

    child_reset_signals();
    if (setsid() < 0)
        child_fail(a->err_fd, ST_SETSID);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        child_fail(a->err_fd, ST_PRCTL);
    /* The parent may have died between clone() and prctl(). */
    if (getppid() != a->parent)
        _exit(127);
    child_limits(a);
    /* The error pipe goes to fd 3 first, so that closing 4.. keeps it.
       All fds passed in are above 2 (see wx__spawn). */
    if (dup2(a->err_fd, err_fd) < 0 || fcntl(err_fd, F_SETFD, FD_CLOEXEC))
        child_fail(a->err_fd, ST_DUP2);
    if (move_fd(a->stdin_fd, 0) || move_fd(a->stdout_fd, 1) ||
        move_fd(a->stderr_fd, 2))
        child_fail(err_fd, ST_DUP2);
    syscall(SYS_close_range, 4u, ~0u, 0u);
    if (a->o->cwd && chdir(a->o->cwd) != 0)
        child_fail(err_fd, ST_CHDIR);
    execvpe(a->o->argv[0], a->o->argv, a->o->envp);
    child_fail(err_fd, ST_EXEC);
    return 127;
}

/* Move `fd` to a descriptor >= 10 (close-on-exec); see child_main. */
static int high_fd(int fd)
{
    int moved;

    if (fd < 0 || fd >= 10)
        return fd;
    moved = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    close(fd);
    return moved;
}

static int make_pipe(int fds[2], wx_error *err)
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        return wx_error_set_sys(err, WX_EIO, errno, "pipe");
    fds[0] = high_fd(fds[0]);
    fds[1] = high_fd(fds[1]);
    if (fds[0] < 0 || fds[1] < 0)
        return wx_error_set_sys(err, WX_EIO, errno, "fcntl");
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int open_log(const char *path, wx_error *err)
{
    int fd = open(path ? path : "/dev/null",
                  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

    if (fd < 0)
        return wx_error_set_sys(err, WX_EIO, errno, "open %s",
                                path ? path : "/dev/null");
    fd = high_fd(fd);
    return fd < 0 ? wx_error_set_sys(err, WX_EIO, errno, "fcntl") : fd;
}

/* clone() the child with every signal blocked (see child_main). */
static pid_t start_child(child_args *a, wx_error *err)
{
    char *stack = wx__malloc(CHILD_STACK);
    sigset_t all, old;
    pid_t pid;

    if (!stack)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = clone(child_main, stack + CHILD_STACK,
                CLONE_VM | CLONE_VFORK | SIGCHLD, a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    wx_free(stack);
    if (pid < 0)
        return wx_error_set_sys(err, WX_EIO, errno, "clone");
    return pid;
}

/*
 * After CLONE_VFORK returns the child has exec'd (the close-on-exec error
 * pipe reads as empty) or failed (it wrote what failed).
 */
static int check_exec(const wx__spawn_opts *o, int err_fd, pid_t pid,
                      wx_error *err)
{
    child_failure f;
    ssize_t n;

    do
        n = read(err_fd, &f, sizeof(f));
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return 0;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof(f) || f.stage < 0 ||
        f.stage >= (int)WX_ARRAY_LEN(stage_names))
        return wx_error_set(err, WX_ESTART, "cannot start %s", o->argv[0]);
    return wx_error_set_sys(err, WX_ESTART, f.err, "cannot start %s: %s",
                            o->argv[0], stage_names[f.stage]);
}

static void tune_pipe(int fd)
{
    fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE); /* a hint; smaller is fine */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

int wx__spawn(const wx__spawn_opts *o, wx__proc *p, wx_error *err)
{
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1};
    int err_pipe[2] = {-1, -1}, log_fd = -1;
    child_args a;
    pid_t pid = -1;
    int rc;

    memset(p, 0, sizeof(*p));
    p->in_fd = p->out_fd = -1;
    if (!o->argv || !o->argv[0])
        return wx_error_set(err, WX_EINVAL, "no program to start");
    rc = make_pipe(in_pipe, err);
    if (!rc)
        rc = make_pipe(out_pipe, err);
    if (!rc)
        rc = make_pipe(err_pipe, err);
    if (!rc && (log_fd = open_log(o->stderr_path, err)) < 0)
        rc = log_fd;
    if (!rc) {
        a = (child_args){o, in_pipe[0], out_pipe[1], log_fd, err_pipe[1],
                         getpid()};
        pid = start_child(&a, err);
        rc = pid < 0 ? (int)pid : 0;
    }
    close_fd(&in_pipe[0]);
    close_fd(&out_pipe[1]);
    close_fd(&err_pipe[1]);
    close_fd(&log_fd);
    if (!rc)
        rc = check_exec(o, err_pipe[0], pid, err);
    close_fd(&err_pipe[0]);
    if (rc) {
        close_fd(&in_pipe[1]);
        close_fd(&out_pipe[0]);
        return rc;
    }
    tune_pipe(in_pipe[1]);
    tune_pipe(out_pipe[0]);
    p->pid = pid;
    p->in_fd = in_pipe[1];
    p->out_fd = out_pipe[0];
    return 0;
}

/*
 * Wait until the process has exited or `deadline` passes.  With `reap`
 * false the exited process stays a zombie, which keeps its process group
 * id from being reused while the rest of the group is killed.
 */
static int wait_exit(wx__proc *p, int64_t deadline, bool reap, wx_error *err)
{
    int64_t sleep_us = 100;

    while (!p->reaped) {
        siginfo_t info;
        int flags = WEXITED | WNOHANG | (reap ? 0 : WNOWAIT);

        info.si_pid = 0;
        if (waitid(P_PID, (id_t)p->pid, &info, flags) != 0) {
            if (errno == EINTR)
                continue;
            if (errno != ECHILD)
                return wx_error_set_sys(err, WX_EIO, errno, "waitid");
            /* ECHILD: reaped elsewhere (SIGCHLD ignored by the host). */
            p->reaped = true;
            p->status = 0;
            break;
        }
        if (info.si_pid == p->pid) {
            if (!reap)
                return 0;
            p->reaped = true;
            p->status = info.si_code == CLD_EXITED
                            ? W_EXITCODE(info.si_status, 0)
                            : W_EXITCODE(0, info.si_status);
            break;
        }
        if (wx__now_ms() >= deadline)
            return wx_error_set(err, WX_ETIMEDOUT,
                                "process %d still running", (int)p->pid);
        usleep((useconds_t)sleep_us);
        sleep_us = WX_MIN(sleep_us * 2, 20000);
    }
    return 0;
}

int wx__proc_wait(wx__proc *p, int64_t deadline, wx_error *err)
{
    return wait_exit(p, deadline, true, err);
}

void wx__proc_signal(wx__proc *p, int sig)
{
    if (p->pid <= 0 || p->reaped)
        return;
    kill(-p->pid, sig);
    kill(p->pid, sig);
}

void wx__proc_close_fds(wx__proc *p)
{
    close_fd(&p->in_fd);
    close_fd(&p->out_fd);
}

void wx__proc_stop(wx__proc *p, int grace_ms)
{
    wx__proc_close_fds(p);
    if (p->pid <= 0 || p->reaped)
        return;
    wx__proc_signal(p, SIGTERM);
    if (wait_exit(p, wx__now_ms() + grace_ms, false, NULL) != 0)
        wx__proc_signal(p, SIGKILL);
    /* Whatever else the worker started in its group goes too, while the
       unreaped leader still holds the group id. */
    kill(-p->pid, SIGKILL);
    wx__proc_wait(p, WX_NO_DEADLINE, NULL);
}

void wx__describe_status(int status, char *out, size_t max)
{
    if (WIFEXITED(status))
        snprintf(out, max, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, max, "killed by signal %d (SIG%s)", WTERMSIG(status),
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status))
                                                : "?");
    else
        snprintf(out, max, "stopped (status %#x)", status);
}
