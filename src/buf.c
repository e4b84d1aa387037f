/* Growable bounded byte buffer. */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <warmexec/buf.h>

#include "alloc.h"

char wx_buf_empty[1];

void wx_buf_init(wx_buf *b, size_t max)
{
    b->data = wx_buf_empty;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void wx_buf_release(wx_buf *b)
{
    if (b->cap)
        wx_free(b->data);
    wx_buf_init(b, b->max);
}

void wx_buf_reset(wx_buf *b)
{
    b->len = 0;
    if (b->cap)
        b->data[0] = '\0';
}

int wx_buf_reserve(wx_buf *b, size_t extra, wx_error *err)
{
    size_t need, cap;
    char *p;

    if (extra > b->max - b->len)
        return wx_error_set(err, WX_ETOOBIG,
                            "data exceeds the limit of %zu bytes", b->max);
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    /* Most buffers hold a short JSON text: one allocation, not four. */
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap - 1 > b->max)
        cap = b->max + 1;
    p = wx__realloc(b->cap ? b->data : NULL, cap);
    if (!p)
        return wx_error_set(err, WX_ENOMEM, "out of memory (%zu bytes)", cap);
    if (!b->cap)
        p[0] = '\0';
    b->data = p;
    b->cap = cap;
    return 0;
}

int wx_buf_append(wx_buf *b, const void *data, size_t n, wx_error *err)
{
    /* Room for n bytes and the NUL already: no need for reserve, and the
       limit holds since cap <= max + 1.  With no storage, cap - len is 0. */
    if (n >= b->cap - b->len) {
        int rc = wx_buf_reserve(b, n, err);

        if (rc)
            return rc;
    }
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int wx_buf_puts(wx_buf *b, const char *s, wx_error *err)
{
    return wx_buf_append(b, s, strlen(s), err);
}

int wx_buf_putc(wx_buf *b, char c, wx_error *err)
{
    if (b->len + 1 < b->cap) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return 0;
    }
    return wx_buf_append(b, &c, 1, err);
}

int wx_buf_vprintf(wx_buf *b, wx_error *err, const char *fmt, va_list ap)
{
    va_list copy;
    int n, rc;

    va_copy(copy, ap);
    n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return wx_error_set(err, WX_EINVAL, "bad format string");
    rc = wx_buf_reserve(b, (size_t)n, err);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int wx_buf_printf(wx_buf *b, wx_error *err, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = wx_buf_vprintf(b, err, fmt, ap);
    va_end(ap);
    return rc;
}

void wx_buf_truncate(wx_buf *b, size_t len)
{
    if (len > b->len)
        WX_BUG("wx_buf_truncate past the end");
    b->len = len;
    if (b->cap)
        b->data[len] = '\0';
}

char *wx_buf_detach(wx_buf *b, size_t *len_out)
{
    char *p = b->data;

    if (len_out)
        *len_out = b->len;
    if (!b->cap) {
        p = wx__calloc(1, 1);
        if (!p)
            return NULL;
    }
    wx_buf_init(b, b->max);
    return p;
}

/* Read until end of file; on failure the buffer keeps its old content. */
static int read_fd(wx_buf *b, int fd, wx_error *err)
{
    for (;;) {
        size_t room;
        ssize_t n;
        int rc;

        /* Ask for at least one byte more than max allows, to detect it. */
        rc = wx_buf_reserve(b, WX_MIN(b->max - b->len, (size_t)65536), err);
        if (rc)
            return rc;
        room = b->cap - b->len - 1;
        if (room == 0) {
            char probe;

            n = read(fd, &probe, 1);
            if (n == 0)
                return 0;
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return wx_error_set_sys(err, WX_EIO, errno, "read failed");
            return wx_error_set(err, WX_ETOOBIG,
                                "input exceeds the limit of %zu bytes",
                                b->max);
        }
        n = read(fd, b->data + b->len, room);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return wx_error_set_sys(err, WX_EIO, errno, "read failed");
        }
        b->len += (size_t)n;
        b->data[b->len] = '\0';
    }
}

int wx_buf_read_fd(wx_buf *b, int fd, wx_error *err)
{
    size_t mark = b->len;
    int rc = read_fd(b, fd, err);

    if (rc)
        wx_buf_truncate(b, mark);
    return rc;
}

int wx_buf_read_file(wx_buf *b, const char *path, wx_error *err)
{
    int fd, rc;

    if (strcmp(path, "-") == 0) {
        rc = wx_buf_read_fd(b, 0, err);
        return rc ? wx_error_prefix(err, rc, "standard input") : 0;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wx_error_set_sys(err,
                                errno == ENOENT ? WX_ENOTFOUND : WX_EIO,
                                errno, "%s", path);
    rc = wx_buf_read_fd(b, fd, err);
    close(fd);
    if (rc)
        return wx_error_prefix(err, rc, "%s", path);
    return 0;
}
