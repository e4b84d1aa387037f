/*
 * Content-Length frames of the worker protocol (docs/protocol.md).
 *
 *   Content-Length: <n>\r\n
 *   [Attachments: <len0>,<len1>,...\r\n]      (warmexec/1 only)
 *   \r\n
 *   <n bytes of UTF-8 JSON><attachment bytes back to back>
 *
 * Header names are case-insensitive, LF-only lines are accepted, unknown
 * headers are ignored.  Limits: a header line is at most
 * WX_FRAME_LINE_MAX bytes, a header block at most WX_FRAME_LINES_MAX
 * lines, body plus attachments at most the reader's max_frame bytes.
 * Any violation is WX_EPROTO: the stream cannot be trusted any more.
 *
 * A reader or writer belongs to one thread at a time.
 */
#ifndef WX_FRAME_H
#define WX_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <warmexec/buf.h>
#include <warmexec/error.h>

#define WX_FRAME_LINE_MAX 1024
#define WX_FRAME_LINES_MAX 16
/* Most attachments one frame may carry. */
#define WX_FRAME_ATT_MAX 1024

/* A parsed header block. */
typedef struct wx__frame_header {
    size_t content_length;
    size_t n_att;
    size_t att_len[WX_FRAME_ATT_MAX];
} wx__frame_header;

/*
 * Parse a header block at buf[0, len).  Returns 0 with `*consumed` set
 * to the bytes of the block (blank line included), 1 when more bytes are
 * needed, or WX_EPROTO.  Body plus attachments must fit `max_frame`.
 */
int wx__frame_parse_header(const char *buf, size_t len, size_t max_frame,
                           wx__frame_header *h, size_t *consumed,
                           wx_error *err);

/* A received frame.  Buffers are reused from frame to frame. */
typedef struct wx__frame {
    wx_buf body;     /* the JSON text (NUL-terminated) */
    wx_buf att;      /* all attachments back to back */
    size_t n_att;
    size_t att_off[WX_FRAME_ATT_MAX + 1]; /* attachment i = att[off[i], off[i+1]) */
} wx__frame;

void wx__frame_init(wx__frame *f, size_t max_frame);
void wx__frame_release(wx__frame *f);

/*
 * Told about a frame's attachments while they arrive, so that a big one
 * can be stored before its last byte is read (the CAS streams of
 * cas.h).  `begin` comes once the body is read and f->att reserved in
 * full (its bytes then stay where they are until the next frame);
 * `arrived` after every read, with the bytes of f->att there so far.  A
 * frame that fails half-way gets no further call: the sink's owner
 * learns it from wx__frame_read().
 */
typedef struct wx__frame_sink {
    void (*begin)(void *ctx, const wx__frame *f);
    void (*arrived)(void *ctx, const wx__frame *f, size_t n);
    void *ctx;
} wx__frame_sink;

/* Buffered reader of frames from a file descriptor. */
typedef struct wx__frame_reader {
    int fd;
    size_t max_frame;
    const wx__frame_sink *sink; /* borrowed; NULL for none */
    char *ahead;      /* read-ahead for header blocks, WX_FRAME_AHEAD bytes */
    size_t ahead_pos; /* first unread byte */
    size_t ahead_len; /* bytes held */
} wx__frame_reader;

int wx__frame_reader_init(wx__frame_reader *r, int fd, size_t max_frame,
                          wx_error *err);
void wx__frame_reader_release(wx__frame_reader *r);

/*
 * Read the next frame into `f`, waiting at most until `deadline` (see
 * clock.h; the fd may be non-blocking).  Returns 0, WX_ETIMEDOUT,
 * WX_ECRASHED for end of file (with `*clean_eof` true when it came before
 * any byte of a frame), WX_EPROTO for a malformed frame, WX_EIO, or
 * WX_ETOOBIG/WX_ENOMEM.
 */
int wx__frame_read(wx__frame_reader *r, wx__frame *f, int64_t deadline,
                   bool *clean_eof, wx_error *err);

/*
 * Write one frame: `body` (JSON text of `len` bytes) and `n_att`
 * attachments.  Waits at most until `deadline` when the fd is
 * non-blocking.  Returns 0, WX_ETIMEDOUT, WX_ECRASHED (the reader has
 * gone: EPIPE), WX_EINVAL (too many attachments) or WX_EIO.
 */
/*
 * Declare that this process ignores SIGPIPE for the rest of its life
 * (signal(SIGPIPE, SIG_IGN) done): writes then skip blocking SIGPIPE
 * around each writev, three system calls per frame.  Without it a
 * closed reader still shows up as WX_ECRASHED, never as a signal.
 */
void wx__frame_sigpipe_ignored(void);

/*
 * Frames written together, one write for many: wx__frame_append() adds
 * the frame of `body` (no attachments) to `out`; wx__frame_write_framed()
 * writes `len` bytes of such frames.  Errors as wx__frame_write().
 */
int wx__frame_append(wx_buf *out, const char *body, size_t len,
                     wx_error *err);
int wx__frame_write_framed(int fd, const char *data, size_t len,
                           int64_t deadline, wx_error *err);

/*
 * Declare that attachments written by this process are never modified
 * after wx__frame_write() returns until the reader has consumed them
 * (true of a runner, which reuses a buffer only for the next request):
 * big attachments are then vmsplice()d into a pipe instead of copied.
 */
void wx__frame_splice_attachments(void);

int wx__frame_write(int fd, const char *body, size_t len,
                    const struct iovec *att, size_t n_att, int64_t deadline,
                    wx_error *err);

#endif
