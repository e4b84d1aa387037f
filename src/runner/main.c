/*
 * warmexec-runner: the native runner.  Loads the model library of a
 * bundle once and serves the worker protocol on stdin/stdout.
 *
 *   warmexec-runner --bundle-path DIR --bundle-digest D
 *
 * The library is the bundle manifest's "library" (DIR/warmexec.json).
 * Exit status: 0 after shutdown or end of input, 1 when the bundle cannot
 * be loaded (the reason is on stderr), 2 for bad arguments, 3 for a broken
 * protocol stream.
 */
#include "internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <warmexec/buf.h>
#include <warmexec/json.h>

#include "frame.h"
#include "host.h"
#include "rpc.h"

#define MANIFEST_MAX (1 << 20)
#define MAX_FRAME ((size_t)1 << 30)

typedef struct args {
    const char *bundle_path;
    const char *digest;
} args;

static int usage(void)
{
    fprintf(stderr, "usage: warmexec-runner --bundle-path DIR "
                    "--bundle-digest D\n");
    return 2;
}

static int parse_args(int argc, char **argv, args *a)
{
    static const struct option options[] = {
        {"bundle-path", required_argument, NULL, 'p'},
        {"bundle-digest", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0}};
    int c;

    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (c == 'p')
            a->bundle_path = optarg;
        else if (c == 'd')
            a->digest = optarg;
        else
            return -1;
    }
    return a->bundle_path && a->digest && optind == argc ? 0 : -1;
}

/*
 * The protocol gets a private copy of fd 1; fd 1 then points at stderr,
 * so nothing the model prints can reach the stream.  Returns the private
 * fd, or -1.
 */
static int protect_stdout(void)
{
    int fd = fcntl(1, F_DUPFD_CLOEXEC, 3);

    if (fd < 0 || dup2(2, 1) < 0)
        return -1;
    return fd;
}

/* DIR/<manifest "library">, checked to stay inside the bundle. */
static int library_path(const char *dir, char *out, size_t max)
{
    char manifest[PATH_MAX];
    wx_error err = WX_ERROR_INIT;
    wx_buf text = WX_BUF_INIT(MANIFEST_MAX);
    json_t *m = NULL;
    const char *lib;
    int rc = -1;

    snprintf(manifest, sizeof(manifest), "%s/warmexec.json", dir);
    if (wx_buf_read_file(&text, manifest, &err) != 0 ||
        wx_json_parse(text.data, text.len, &m, &err) != 0)
        fprintf(stderr, "warmexec-runner: %s\n", err.message);
    else if (!(lib = json_string_value(json_object_get(m, "library"))))
        fprintf(stderr, "warmexec-runner: %s has no \"library\"\n",
                manifest);
    else if (lib[0] == '/' || strstr(lib, ".."))
        fprintf(stderr, "warmexec-runner: library '%s' must be a path "
                        "inside the bundle\n",
                lib);
    else if ((size_t)snprintf(out, max, "%s/%s", dir, lib) < max)
        rc = 0;
    json_decref(m);
    wx_buf_release(&text);
    return rc;
}

/* dlopen the model and run its wx_model_init. */
static int load_model(const char *dir, host *h)
{
    char path[PATH_MAX];
    int (*init)(wx_model_registry *);
    void *lib;

    if (library_path(dir, path, sizeof(path)) != 0)
        return -1;
    lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "warmexec-runner: cannot load %s: %s\n", path,
                dlerror());
        return -1;
    }
    *(void **)&init = dlsym(lib, "wx_model_init");
    if (!init) {
        fprintf(stderr, "warmexec-runner: %s has no wx_model_init\n", path);
        return -1;
    }
    if (init(host_registry(h)) != 0) {
        fprintf(stderr, "warmexec-runner: wx_model_init of %s failed\n",
                path);
        return -1;
    }
    return 0; /* the library stays loaded: that is the warm worker */
}

int main(int argc, char **argv)
{
    wx_error err = WX_ERROR_INIT;
    args a = {NULL, NULL};
    host *h;
    int out_fd, rc;

    if (parse_args(argc, argv, &a) != 0)
        return usage();
    /* A manager that went away is an EPIPE, handled like end of file. */
    signal(SIGPIPE, SIG_IGN);
    wx__frame_sigpipe_ignored();
    /* Outputs live in slots reused only by the next call. */
    wx__frame_splice_attachments();
    out_fd = protect_stdout();
    h = host_new(a.digest, a.bundle_path);
    if (out_fd < 0 || !h) {
        fprintf(stderr, "warmexec-runner: cannot set up the protocol\n");
        return 1;
    }
    if (load_model(a.bundle_path, h) != 0) {
        host_free(h);
        return 1;
    }
    rc = wx__rpc_serve(0, out_fd, MAX_FRAME, host_handle, h, host_release,
                       &err);
    if (rc)
        fprintf(stderr, "warmexec-runner: %s\n", err.message);
    host_free(h);
    return rc ? 3 : 0;
}
