/*
 * File system helpers: durable atomic writes and directory creation.
 * Thread-safe (no shared state).
 */
#ifndef WX_FS_H
#define WX_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <warmexec/error.h>

/*
 * Replace the file at `path` with `data` atomically and durably: write a
 * temporary file in the same directory, fsync it, rename it over `path`,
 * then fsync the directory.  After a crash `path` holds either its old
 * content or the new one, never a mix.  `mode` is the new file's mode
 * (filtered by the umask, as for open(2)).
 */
int wx__fs_write_atomic(const char *path, const void *data, size_t n,
                        mode_t mode, wx_error *err);

/* Create `path` and missing parents (mode 0755); an existing dir is ok. */
int wx__fs_mkdirs(const char *path, wx_error *err);

/*
 * "<dir>/<name>" into `out` (`max` bytes).  WX_EINVAL when it does not
 * fit (the message names the path).
 */
int wx__path_join(char *out, size_t max, const char *dir, const char *name,
                  wx_error *err);

/* rm -rf `path`, best effort (errors are ignored). */
void wx__fs_remove_tree(const char *path);

/* fsync the directory that contains `path`. */
int wx__fs_sync_parent(const char *path, wx_error *err);

/* fsync the file or directory at `path`; a missing one is fine when
 * `missing_ok`. */
int wx__fs_sync_path(const char *path, bool missing_ok, wx_error *err);

/*
 * Open a new, uniquely named file "<dir>/.<prefix>.XXXXXX.tmp" for writing
 * (O_EXCL, close-on-exec).  Its name is stored in `name_out` (`name_max`
 * bytes).  Returns the fd, or a negative WX_E* code.
 */
int wx__fs_open_temp(const char *dir, const char *prefix, char *name_out,
                     size_t name_max, mode_t mode, wx_error *err);

/* Write all `n` bytes, retrying short writes and EINTR. */
int wx__fs_write_all(int fd, const void *data, size_t n, wx_error *err);

#endif
