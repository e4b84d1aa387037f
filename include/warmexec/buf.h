/*
 * wx_buf: the one growable byte buffer, with a hard maximum size.
 *
 * Invariants: `data` is never NULL and always NUL-terminated (data[len] ==
 * 0), `len <= max`.  A buffer that would grow past `max` fails with
 * WX_ETOOBIG and keeps its content, so a hostile or broken peer cannot make
 * warmexec allocate without limit.  The buffer owns `data`; wx_buf_detach()
 * is the only way to take it over.  Not thread-safe: one owner at a time.
 */
#ifndef WARMEXEC_BUF_H
#define WARMEXEC_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include <warmexec/error.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wx_buf {
    char *data;
    size_t len;
    size_t cap; /* 0 while `data` points at the shared empty string */
    size_t max;
} wx_buf;

/* Storage behind an empty buffer; never written to. */
WX_API extern char wx_buf_empty[1];

#define WX_BUF_INIT(maximum) {wx_buf_empty, 0, 0, (maximum)}

/* Set up an empty buffer that may grow to `max` bytes. */
WX_API void wx_buf_init(wx_buf *b, size_t max);

/* Free the content and leave an empty buffer with the same max. */
WX_API void wx_buf_release(wx_buf *b);

/* Keep the allocation, drop the content (len = 0). */
WX_API void wx_buf_reset(wx_buf *b);

/* Make room for `extra` more bytes.  WX_ETOOBIG past max, WX_ENOMEM. */
WX_API int wx_buf_reserve(wx_buf *b, size_t extra, wx_error *err);

WX_API int wx_buf_append(wx_buf *b, const void *data, size_t n,
                         wx_error *err);
WX_API int wx_buf_puts(wx_buf *b, const char *s, wx_error *err);
WX_API int wx_buf_putc(wx_buf *b, char c, wx_error *err);
WX_API int wx_buf_printf(wx_buf *b, wx_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
WX_API int wx_buf_vprintf(wx_buf *b, wx_error *err, const char *fmt,
                          va_list ap) __attribute__((format(printf, 3, 0)));

/* Cut the content to `len` bytes (len <= b->len). */
WX_API void wx_buf_truncate(wx_buf *b, size_t len);

/*
 * Hand the content over to the caller (caller frees with wx_free()) and
 * leave `b` empty.  The returned pointer is never NULL on success; NULL
 * means out of memory (only possible for an empty buffer).  `*len_out`
 * (optional) receives the length.
 */
WX_API char *wx_buf_detach(wx_buf *b, size_t *len_out);

/*
 * Append the whole content of the file at `path` ("-" is standard input).
 * Fails with WX_ETOOBIG when it would exceed the buffer's max, WX_EIO on a
 * read error, WX_ENOTFOUND when the file does not exist; on failure the
 * buffer keeps its previous content.
 */
WX_API int wx_buf_read_file(wx_buf *b, const char *path, wx_error *err);

/* As wx_buf_read_file(), from an open file descriptor, until end of file. */
WX_API int wx_buf_read_fd(wx_buf *b, int fd, wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
