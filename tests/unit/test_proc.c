/* Spawning worker processes with isolation, waiting, stopping. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "proc.h"

static char *const g_env[] = {"PATH=/usr/bin:/bin", "WX_TEST=1", NULL};

/* Everything the process writes to stdout, until it closes it. */
static char *read_stdout(wx__proc *p)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    int64_t deadline = wx__deadline_after(10);

    for (;;) {
        struct pollfd pfd = {p->out_fd, POLLIN, 0};
        ssize_t n;

        if (poll(&pfd, 1, wx__poll_timeout(deadline)) == 0)
            fail_msg("no end of output from pid %d", (int)p->pid);
        n = read(p->out_fd, out + len, cap - len - 1);
        if (n == 0)
            break;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        assert_true(n > 0);
        len += (size_t)n;
        assert_true(len < cap - 1);
    }
    out[len] = '\0';
    return out;
}

/* Run argv to its end; its stdout, and its wait status in *status. */
static char *run(char *const *argv, char *const *envp, const char *cwd,
                 const char *log, uint64_t mem_limit, int *status)
{
    wx__spawn_opts o = {argv, envp, cwd, log, mem_limit};
    wx__proc p;
    wx_error err = WX_ERROR_INIT;
    char *out;

    assert_ok(wx__spawn(&o, &p, &err), &err);
    assert_true(p.pid > 0);
    out = read_stdout(&p);
    assert_ok(wx__proc_wait(&p, wx__deadline_after(10), &err), &err);
    assert_true(p.reaped);
    if (status)
        *status = p.status;
    wx__proc_close_fds(&p);
    return out;
}

/* True when this process has no child left, running or zombie. */
static bool no_children(void)
{
    return waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
}

/* True once `pid` has gone (or is a zombie that is not ours to reap). */
static bool gone(pid_t pid, int within_ms)
{
    int64_t deadline = wx__now_ms() + within_ms;
    char path[64], stat[512];

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    do {
        FILE *f = fopen(path, "r");
        char *paren;
        bool zombie = false;

        if (!f)
            return true;
        if (fgets(stat, sizeof(stat), f) &&
            (paren = strrchr(stat, ')')) != NULL)
            zombie = paren[2] == 'Z' || paren[2] == 'X';
        fclose(f);
        if (zombie)
            return true;
        usleep(5000);
    } while (wx__now_ms() < deadline);
    return false;
}

static void test_spawn_missing_program(void **state)
{
    static char *const argv[] = {"/nonexistent/wx-no-such-runner", "x",
                                 NULL};
    static char *const in_path[] = {"wx-no-such-runner-in-path", NULL};
    wx__spawn_opts o = {argv, g_env, NULL, NULL, 0};
    wx__proc p;
    wx_error err = WX_ERROR_INIT;

    assert_true(no_children());
    assert_fails(wx__spawn(&o, &p, &err), WX_ESTART, &err,
                 "/nonexistent/wx-no-such-runner");
    assert_non_null(strstr(err.message, "exec"));
    assert_int_equal(err.sys_errno, ENOENT);
    assert_int_equal(p.pid, 0);
    assert_int_equal(p.in_fd, -1);
    assert_int_equal(p.out_fd, -1);
    /* The failed child was reaped: no zombie. */
    assert_true(no_children());
    o.argv = in_path;
    assert_fails(wx__spawn(&o, &p, &err), WX_ESTART, &err,
                 "wx-no-such-runner-in-path");
    assert_true(no_children());
    /* Not executable. */
    {
        static char *const not_exec[] = {"/etc/passwd", NULL};

        o.argv = not_exec;
        assert_fails(wx__spawn(&o, &p, &err), WX_ESTART, &err,
                     "/etc/passwd");
        assert_int_equal(err.sys_errno, EACCES);
        assert_true(no_children());
    }
    /* A cwd that does not exist: named as the failing step. */
    {
        static char *const env_argv[] = {"/usr/bin/env", NULL};

        o.argv = env_argv;
        o.cwd = "/nonexistent-wx-dir";
        assert_fails(wx__spawn(&o, &p, &err), WX_ESTART, &err, "chdir");
        assert_true(no_children());
    }
}

static void test_environment_is_exactly_envp(void **state)
{
    static char *const argv[] = {"/usr/bin/env", NULL};
    static char *const envp[] = {"A=1", "B=two words", "EMPTY=", NULL};
    static char *const none[] = {NULL};
    int status;
    char *out;

    setenv("WX_PARENT_ONLY", "leak", 1);
    out = run(argv, envp, NULL, NULL, 0, &status);
    assert_string_equal(out, "A=1\nB=two words\nEMPTY=\n");
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(out);
    out = run(argv, none, NULL, NULL, 0, &status);
    assert_string_equal(out, "");
    free(out);
    unsetenv("WX_PARENT_ONLY");
}

static void test_cwd_and_stderr_log(void **state)
{
    const char *dir = *state;
    static char *const argv[] = {"/bin/sh", "-c",
                                 "pwd; echo to-stderr >&2; echo out", NULL};
    char log[4096], real[PATH_MAX], *out, *text;
    FILE *f;
    size_t n;

    assert_non_null(realpath(dir, real));
    snprintf(log, sizeof(log), "%s/worker.log", dir);
    f = fopen(log, "w");
    fputs("earlier line\n", f);
    fclose(f);
    out = run(argv, g_env, dir, log, 0, NULL);
    {
        char expected[PATH_MAX + 16];

        snprintf(expected, sizeof(expected), "%s\nout\n", real);
        assert_string_equal(out, expected);
    }
    free(out);
    /* Appended, not truncated. */
    text = calloc(1, 4096);
    f = fopen(log, "r");
    n = fread(text, 1, 4095, f);
    fclose(f);
    text[n] = '\0';
    assert_string_equal(text, "earlier line\nto-stderr\n");
    free(text);
    /* Without a log, stderr goes nowhere and nothing fails. */
    out = run(argv, g_env, dir, NULL, 0, NULL);
    free(out);
}

static void test_no_fds_inherited(void **state)
{
    static char *const argv[] = {"/bin/sh", "-c", "ls /proc/self/fd", NULL};
    int leak[2], file;
    char *out;

    /* Descriptors without O_CLOEXEC, low and high. */
    assert_int_equal(pipe(leak), 0);
    file = open("/dev/null", O_RDONLY);
    assert_true(file >= 0);
    assert_true(dup2(file, 200) == 200);
    out = run(argv, g_env, NULL, NULL, 0, NULL);
    /* 0-2, and 3: ls's own handle on the directory it lists. */
    assert_string_equal(out, "0\n1\n2\n3\n");
    free(out);
    close(leak[0]);
    close(leak[1]);
    close(file);
    close(200);
}

static void test_own_process_group_and_session(void **state)
{
    static char *const argv[] = {"/bin/sleep", "5", NULL};
    static char *const stat_argv[] = {"/bin/cat", "/proc/self/stat", NULL};
    wx__spawn_opts o = {argv, g_env, NULL, NULL, 0};
    wx__proc p;
    wx_error err = WX_ERROR_INIT;
    char *out, *paren;
    int pid, ppid, pgrp, sid;
    int64_t start;

    assert_ok(wx__spawn(&o, &p, &err), &err);
    assert_int_equal(getpgid(p.pid), p.pid);
    assert_int_equal(getsid(p.pid), p.pid);
    assert_true(getpgid(p.pid) != getpgid(0));
    /* The pipes to it are non-blocking and close-on-exec. */
    assert_true(fcntl(p.in_fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(p.out_fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(p.in_fd, F_GETFD) & FD_CLOEXEC);
    assert_true(fcntl(p.out_fd, F_GETFD) & FD_CLOEXEC);
    assert_fails(wx__proc_wait(&p, wx__now_ms() + 50, &err), WX_ETIMEDOUT,
                 &err, "still running");
    start = wx__now_ms();
    wx__proc_stop(&p, 2000);
    /* sleep dies of SIGTERM at once: no waiting for the grace period. */
    assert_true(wx__now_ms() - start < 1000);
    assert_true(p.reaped);
    assert_true(WIFSIGNALED(p.status) && WTERMSIG(p.status) == SIGTERM);
    assert_int_equal(p.in_fd, -1);
    assert_int_equal(p.out_fd, -1);
    assert_true(no_children());

    /* Seen from inside: pid = process group = session. */
    out = run(stat_argv, g_env, NULL, NULL, 0, NULL);
    paren = strrchr(out, ')');
    assert_non_null(paren);
    assert_int_equal(sscanf(out, "%d", &pid), 1);
    assert_int_equal(sscanf(paren + 2, "%*c %d %d %d", &ppid, &pgrp, &sid),
                     3);
    assert_int_equal(pgrp, pid);
    assert_int_equal(sid, pid);
    assert_int_equal(ppid, getpid());
    free(out);
}

static void test_resource_limits(void **state)
{
    static char *const argv[] = {"/bin/sh", "-c", "ulimit -c; ulimit -v",
                                 NULL};
    char *out;

    out = run(argv, g_env, NULL, NULL, 0, NULL);
    /* No core dumps; no address-space limit unless asked (or inherited). */
    if (strcmp(out, "0\nunlimited\n") != 0) {
        struct rlimit as;

        assert_int_equal(getrlimit(RLIMIT_AS, &as), 0);
        assert_true(as.rlim_cur != RLIM_INFINITY);
        assert_memory_equal(out, "0\n", 2);
    }
    free(out);
    out = run(argv, g_env, NULL, NULL, (uint64_t)512 << 20, NULL);
    assert_string_equal(out, "0\n524288\n");
    free(out);
}

static void test_stop_kills_what_ignores_sigterm(void **state)
{
    /* The shell and its background child both ignore SIGTERM. */
    static char *const argv[] = {
        "/bin/sh", "-c",
        "trap '' TERM; /bin/sleep 60 & echo $!; exec /bin/sleep 60", NULL};
    wx__spawn_opts o = {argv, g_env, NULL, NULL, 0};
    wx__proc p;
    wx_error err = WX_ERROR_INIT;
    char line[64] = "";
    size_t len = 0;
    int64_t start, elapsed;
    pid_t child;

    assert_ok(wx__spawn(&o, &p, &err), &err);
    /* The background sleep's pid, from the first line of output. */
    while (!strchr(line, '\n')) {
        struct pollfd pfd = {p.out_fd, POLLIN, 0};
        ssize_t n;

        assert_int_equal(poll(&pfd, 1, 5000), 1);
        n = read(p.out_fd, line + len, sizeof(line) - 1 - len);
        assert_true(n > 0);
        len += (size_t)n;
        line[len] = '\0';
    }
    child = (pid_t)atoi(line);
    assert_true(child > 0);
    assert_int_equal(getpgid(child), p.pid);
    /* Give the exec a moment, so SIGTERM meets the ignoring sleep. */
    usleep(100000);
    start = wx__now_ms();
    wx__proc_stop(&p, 300);
    elapsed = wx__now_ms() - start;
    assert_true(p.reaped);
    assert_true(WIFSIGNALED(p.status));
    assert_int_equal(WTERMSIG(p.status), SIGKILL);
    if (elapsed < 290 || elapsed > 3000)
        fail_msg("stop took %lld ms with a grace period of 300 ms",
                 (long long)elapsed);
    /* The child in its group went too. */
    assert_true(gone(child, 3000));
    assert_true(no_children());
    /* Stopping again is harmless. */
    wx__proc_stop(&p, 300);
    wx__proc_signal(&p, SIGKILL);
}

static void test_exit_status_and_wait(void **state)
{
    static char *const exit3[] = {"/bin/sh", "-c", "exit 3", NULL};
    static char *const segv[] = {"/bin/sh", "-c", "kill -SEGV $$", NULL};
    int status;
    char *out, text[96];

    out = run(exit3, g_env, NULL, NULL, 0, &status);
    free(out);
    wx__describe_status(status, text, sizeof(text));
    assert_string_equal(text, "exited with status 3");
    out = run(segv, g_env, NULL, NULL, 0, &status);
    free(out);
    wx__describe_status(status, text, sizeof(text));
    assert_string_equal(text, "killed by signal 11 (SIGSEGV)");
}

static void test_describe_status(void **state)
{
    char text[96];

    wx__describe_status(W_EXITCODE(0, 0), text, sizeof(text));
    assert_string_equal(text, "exited with status 0");
    wx__describe_status(W_EXITCODE(3, 0), text, sizeof(text));
    assert_string_equal(text, "exited with status 3");
    wx__describe_status(W_EXITCODE(255, 0), text, sizeof(text));
    assert_string_equal(text, "exited with status 255");
    wx__describe_status(W_EXITCODE(0, SIGKILL), text, sizeof(text));
    assert_string_equal(text, "killed by signal 9 (SIGKILL)");
    wx__describe_status(W_EXITCODE(0, SIGSEGV), text, sizeof(text));
    assert_string_equal(text, "killed by signal 11 (SIGSEGV)");
    wx__describe_status(W_EXITCODE(0, SIGTERM), text, sizeof(text));
    assert_string_equal(text, "killed by signal 15 (SIGTERM)");
    wx__describe_status(W_EXITCODE(0, SIGABRT) | 0x80, text, sizeof(text));
    assert_string_equal(text, "killed by signal 6 (SIGABRT)");
    wx__describe_status(W_STOPCODE(SIGSTOP), text, sizeof(text));
    assert_string_equal(text, "stopped (status 0x137f)");
    /* Truncated to the buffer, always terminated. */
    wx__describe_status(W_EXITCODE(0, SIGKILL), text, 10);
    assert_string_equal(text, "killed by");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn_missing_program),
        cmocka_unit_test(test_environment_is_exactly_envp),
        cmocka_unit_test_setup_teardown(test_cwd_and_stderr_log,
                                        tu_setup_tempdir,
                                        tu_teardown_tempdir),
        cmocka_unit_test(test_no_fds_inherited),
        cmocka_unit_test(test_own_process_group_and_session),
        cmocka_unit_test(test_resource_limits),
        cmocka_unit_test(test_stop_kills_what_ignores_sigterm),
        cmocka_unit_test(test_exit_status_and_wait),
        cmocka_unit_test(test_describe_status),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
