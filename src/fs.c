/* Atomic durable file writes and directory helpers. */
#include "internal.h"

#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"

int wx__fs_write_all(int fd, const void *data, size_t n, wx_error *err)
{
    const char *p = data;

    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return wx_error_set_sys(err, WX_EIO, errno, "write failed");
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Copy the directory part of `path` into `dir` (PATH_MAX bytes). */
static int parent_dir(const char *path, char dir[PATH_MAX], wx_error *err)
{
    char copy[PATH_MAX];
    size_t len = strlen(path);

    if (len >= sizeof(copy))
        return wx_error_set(err, WX_EINVAL, "path too long: %s", path);
    memcpy(copy, path, len + 1);
    snprintf(dir, PATH_MAX, "%s", dirname(copy));
    return 0;
}

int wx__fs_sync_path(const char *path, bool missing_ok, wx_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0 && missing_ok && errno == ENOENT)
        return 0;
    if (fd < 0)
        return wx_error_set_sys(err, WX_EIO, errno, "open %s", path);
    if (fsync(fd) != 0)
        rc = wx_error_set_sys(err, WX_EIO, errno, "fsync %s", path);
    close(fd);
    return rc;
}

int wx__fs_sync_parent(const char *path, wx_error *err)
{
    char dir[PATH_MAX];
    int rc = parent_dir(path, dir, err);

    return rc ? rc : wx__fs_sync_path(dir, false, err);
}

int wx__fs_open_temp(const char *dir, const char *prefix, char *name_out,
                     size_t name_max, mode_t mode, wx_error *err)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyz0123456789";

    for (int attempt = 0; attempt < 100; attempt++) {
        char suffix[7];
        uint64_t r;
        int fd;

        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
            r = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull +
                (uint64_t)attempt;
        for (int i = 0; i < 6; i++) {
            suffix[i] = letters[r % 36];
            r /= 36;
        }
        suffix[6] = '\0';
        if ((size_t)snprintf(name_out, name_max, "%s/.%s.%s.tmp", dir,
                             prefix, suffix) >= name_max)
            return wx_error_set(err, WX_EINVAL, "path too long in %s", dir);
        fd = open(name_out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            return wx_error_set_sys(err, WX_EIO, errno, "create %s",
                                    name_out);
    }
    return wx_error_set(err, WX_EIO, "cannot create a temporary file in %s",
                        dir);
}

int wx__fs_write_atomic(const char *path, const void *data, size_t n,
                        mode_t mode, wx_error *err)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    int fd = -1, rc;

    rc = parent_dir(path, dir, err);
    if (rc)
        return rc;
    fd = wx__fs_open_temp(dir, "wx", tmp, sizeof(tmp), mode, err);
    if (fd < 0)
        return fd;
    rc = wx__fs_write_all(fd, data, n, err);
    if (!rc && fsync(fd) != 0)
        rc = wx_error_set_sys(err, WX_EIO, errno, "fsync %s", tmp);
    if (close(fd) != 0 && !rc)
        rc = wx_error_set_sys(err, WX_EIO, errno, "close %s", tmp);
    if (!rc && rename(tmp, path) != 0)
        rc = wx_error_set_sys(err, WX_EIO, errno, "rename to %s", path);
    if (rc) {
        unlink(tmp);
        return wx_error_prefix(err, rc, "cannot write %s", path);
    }
    return wx__fs_sync_parent(path, err);
}

/* mkdir that accepts an existing directory (but not a file). */
static int make_dir(const char *path, wx_error *err)
{
    struct stat st;

    if (mkdir(path, 0755) == 0)
        return 0;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    if (errno == EEXIST)
        errno = ENOTDIR;
    return wx_error_set_sys(err, WX_EIO, errno, "mkdir %s", path);
}

int wx__fs_mkdirs(const char *path, wx_error *err)
{
    char copy[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(copy))
        return wx_error_set(err, WX_EINVAL, "bad directory path: '%s'",
                            path);
    memcpy(copy, path, len + 1);
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        int rc;

        *p = '\0';
        rc = make_dir(copy, err);
        if (rc)
            return rc;
        *p = '/';
    }
    return make_dir(copy, err);
}

int wx__path_join(char *out, size_t max, const char *dir, const char *name,
                  wx_error *err)
{
    int n = snprintf(out, max, "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= max)
        return wx_error_set(err, WX_EINVAL, "path too long: %s/%s", dir,
                            name);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void wx__fs_remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
