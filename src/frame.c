/* Content-Length frames over file descriptors, with deadlines. */
#include "internal.h"

#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "frame.h"

/* Read-ahead for header blocks: bigger than the largest legal block. */
/* Attachments from this size on may be spliced (see frame.h). */
#define SPLICE_MIN ((size_t)64 << 10)
#define WX_FRAME_AHEAD (WX_FRAME_LINE_MAX * (WX_FRAME_LINES_MAX + 2))

/* A header line, printable, for messages. */
static void quote_line(const char *s, size_t len, char *out, size_t max)
{
    size_t o = 0;

    for (size_t i = 0; i < len && o + 5 < max && i < 40; i++) {
        unsigned char c = (unsigned char)s[i];

        if (isprint(c))
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, max - o, "\\x%02x", c);
    }
    out[o] = '\0';
}

static bool name_is(const char *s, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(s, name, len) == 0;
}

static void trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

/* Digits only, no sign or spaces (trimmed before); false on overflow. */
static bool parse_size(const char *s, size_t len, size_t *out)
{
    size_t v = 0;

    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static int parse_content_length(const char *v, size_t len,
                                 wx__frame_header *h, bool *seen,
                                 wx_error *err)
{
    size_t n;

    if (!parse_size(v, len, &n))
        return wx_error_set(err, WX_EPROTO, "invalid Content-Length: %.*s",
                            (int)WX_MIN(len, 40), v);
    if (*seen && n != h->content_length)
        return wx_error_set(err, WX_EPROTO,
                            "conflicting Content-Length headers");
    h->content_length = n;
    *seen = true;
    return 0;
}

/* "Attachments: 12,0,70000"; repeated lines continue the list. */
static int parse_attachments(const char *v, size_t len, wx__frame_header *h,
                             wx_error *err)
{
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        const char *item;
        size_t item_len;

        if (i < len && v[i] != ',')
            continue;
        item = v + start;
        item_len = i - start;
        trim(&item, &item_len);
        if (h->n_att >= WX_FRAME_ATT_MAX)
            return wx_error_set(err, WX_EPROTO,
                                "more than %d attachments in a frame",
                                WX_FRAME_ATT_MAX);
        if (!parse_size(item, item_len, &h->att_len[h->n_att]))
            return wx_error_set(err, WX_EPROTO,
                                "invalid Attachments header");
        h->n_att++;
        start = i + 1;
    }
    return 0;
}

static int parse_line(const char *line, size_t len, wx__frame_header *h,
                      bool *seen_length, wx_error *err)
{
    const char *colon = memchr(line, ':', len), *value;
    size_t name_len, value_len;
    char shown[256];

    if (!colon) {
        quote_line(line, len, shown, sizeof(shown));
        return wx_error_set(err, WX_EPROTO,
                            "invalid header line '%s' (bytes outside a "
                            "frame?)",
                            shown);
    }
    name_len = (size_t)(colon - line);
    value = colon + 1;
    value_len = len - name_len - 1;
    trim(&line, &name_len);
    trim(&value, &value_len);
    if (name_is(line, name_len, "content-length"))
        return parse_content_length(value, value_len, h, seen_length, err);
    if (name_is(line, name_len, "attachments"))
        return parse_attachments(value, value_len, h, err);
    return 0; /* unknown headers are ignored */
}

/* Body and attachments must fit max_frame, without overflow. */
static int check_total(const wx__frame_header *h, size_t max_frame,
                       wx_error *err)
{
    size_t total = h->content_length;

    if (total > max_frame)
        goto too_big;
    for (size_t i = 0; i < h->n_att; i++) {
        if (h->att_len[i] > max_frame - total)
            goto too_big;
        total += h->att_len[i];
    }
    if (total <= max_frame)
        return 0;
too_big:
    return wx_error_set(err, WX_EPROTO,
                        "frame larger than max_frame_bytes (%zu)", max_frame);
}

int wx__frame_parse_header(const char *buf, size_t len, size_t max_frame,
                           wx__frame_header *h, size_t *consumed,
                           wx_error *err)
{
    bool seen_length = false;
    size_t pos = 0;

    h->content_length = 0;
    h->n_att = 0;
    for (int lines = 0;; lines++) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t line_len = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        int rc;

        if (line_len + 1 > WX_FRAME_LINE_MAX)
            return wx_error_set(err, WX_EPROTO,
                                "header line longer than %d bytes",
                                WX_FRAME_LINE_MAX);
        if (lines >= WX_FRAME_LINES_MAX)
            return wx_error_set(err, WX_EPROTO,
                                "more than %d header lines",
                                WX_FRAME_LINES_MAX - 1);
        if (!nl)
            return 1;
        while (line_len && buf[pos + line_len - 1] == '\r')
            line_len--;
        if (line_len == 0) {
            if (!seen_length)
                return wx_error_set(err, WX_EPROTO,
                                    "missing Content-Length header");
            *consumed = (size_t)(nl - buf) + 1;
            return check_total(h, max_frame, err);
        }
        rc = parse_line(buf + pos, line_len, h, &seen_length, err);
        if (rc)
            return rc;
        pos = (size_t)(nl - buf) + 1;
    }
}

void wx__frame_init(wx__frame *f, size_t max_frame)
{
    wx_buf_init(&f->body, max_frame);
    wx_buf_init(&f->att, max_frame);
    f->n_att = 0;
    f->att_off[0] = 0;
}

void wx__frame_release(wx__frame *f)
{
    wx_buf_release(&f->body);
    wx_buf_release(&f->att);
    f->n_att = 0;
}

int wx__frame_reader_init(wx__frame_reader *r, int fd, size_t max_frame,
                          wx_error *err)
{
    r->fd = fd;
    r->max_frame = max_frame;
    r->sink = NULL;
    r->ahead_pos = r->ahead_len = 0;
    r->ahead = wx__malloc(WX_FRAME_AHEAD);
    if (!r->ahead)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    return 0;
}

void wx__frame_reader_release(wx__frame_reader *r)
{
    wx_free(r->ahead);
    r->ahead = NULL;
}

/* Wait for `events` on fd until the deadline: 0, WX_ETIMEDOUT or WX_EIO. */
static int wait_fd(int fd, short events, int64_t deadline, wx_error *err)
{
    struct pollfd p = {fd, events, 0};

    for (;;) {
        int n = poll(&p, 1, wx__poll_timeout(deadline));

        if (n > 0)
            return 0;
        if (n == 0)
            return wx_error_set(err, WX_ETIMEDOUT,
                                "deadline passed while waiting for the "
                                "worker");
        if (errno != EINTR)
            return wx_error_set_sys(err, WX_EIO, errno, "poll");
    }
}

/*
 * A reply to a short task comes within tens of microseconds, and sleeping
 * in poll() to be woken costs about as much again (on a VM the wake-up
 * is an interrupt to another CPU): before sleeping, a reader retries a
 * non-blocking read for up to SPIN_NS, if fewer than half the CPUs are
 * doing so already (the workers need the others).  Measured on the noop
 * bundle: 29 -> 20 us per warm task; `warmexec run` -j 1 7,800 -> 10,200
 * tasks/s, -j 2 unchanged.
 */
#define SPIN_NS 30000

static atomic_int spinners;
static atomic_int spin_slots; /* 0 until computed: CPUs / 2, at least 1 */

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static bool take_spin_slot(void)
{
    int slots = atomic_load_explicit(&spin_slots, memory_order_relaxed);

    if (!slots) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        slots = cpus >= 4 ? (int)(cpus / 2) : 1;
        atomic_store_explicit(&spin_slots, slots, memory_order_relaxed);
    }
    if (atomic_fetch_add(&spinners, 1) < slots)
        return true;
    atomic_fetch_sub(&spinners, 1);
    return false;
}

/* A read that spins briefly (see SPIN_NS); -1 with errno as read(2). */
static ssize_t spin_read(int fd, char *buf, size_t n)
{
    int64_t until;
    ssize_t got;

    if (!take_spin_slot()) {
        errno = EAGAIN;
        return -1;
    }
    until = wx__now_ns() + SPIN_NS;
    while ((got = read(fd, buf, n)) < 0 && errno == EAGAIN &&
           wx__now_ns() < until)
        cpu_relax();
    atomic_fetch_sub(&spinners, 1);
    return got;
}

/*
 * read() at most n bytes; returns bytes read (0 = end of file) or < 0.
 * `spin_first`: a reply is expected soon on a non-blocking fd.
 */
static ssize_t read_some(int fd, char *buf, size_t n, int64_t deadline,
                         bool spin_first, wx_error *err)
{
    if (spin_first) {
        ssize_t got = spin_read(fd, buf, n);
        int rc = 0;

        if (got >= 0)
            return got;
        if (errno == EAGAIN) /* nothing yet: sleep until there is */
            rc = wait_fd(fd, POLLIN, deadline, err);
        else if (errno != EINTR)
            rc = wx_error_set_sys(err, WX_EIO, errno, "read");
        if (rc)
            return rc;
    }
    for (;;) {
        ssize_t got = read(fd, buf, n);
        int rc;

        if (got >= 0)
            return got;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return wx_error_set_sys(err, WX_EIO, errno, "read");
        rc = wait_fd(fd, POLLIN, deadline, err);
        if (rc)
            return rc;
    }
}

/* Fill the read-ahead until it holds a whole header block. */
static int read_header(wx__frame_reader *r, wx__frame_header *h,
                       int64_t deadline, bool *clean_eof, wx_error *err)
{
    for (;;) {
        size_t used = 0;
        ssize_t got;
        int rc = wx__frame_parse_header(r->ahead + r->ahead_pos,
                                        r->ahead_len - r->ahead_pos,
                                        r->max_frame, h, &used, err);

        if (rc <= 0) {
            r->ahead_pos += used;
            return rc;
        }
        if (r->ahead_pos > 0) {
            memmove(r->ahead, r->ahead + r->ahead_pos,
                    r->ahead_len - r->ahead_pos);
            r->ahead_len -= r->ahead_pos;
            r->ahead_pos = 0;
        }
        /* A new frame with a deadline (a reply still being computed, on
         * a non-blocking fd) is usually not there yet but soon: spin
         * briefly before polling.  Without a deadline (a runner waiting
         * for requests) a blocking read waits by itself. */
        got = read_some(r->fd, r->ahead + r->ahead_len,
                        WX_FRAME_AHEAD - r->ahead_len, deadline,
                        r->ahead_len == 0 && deadline != WX_NO_DEADLINE,
                        err);
        if (got < 0)
            return (int)got;
        if (got == 0) {
            *clean_eof = r->ahead_len == 0;
            return wx_error_set(err, WX_ECRASHED,
                                r->ahead_len ? "stream closed inside a "
                                               "frame header"
                                             : "stream closed");
        }
        r->ahead_len += (size_t)got;
    }
}

/*
 * Append exactly n bytes to `b`: first from the read-ahead, then the fd.
 * With `f` set, `b` is that frame's attachments and the reader's sink
 * hears about them.
 */
static int read_exact(wx__frame_reader *r, wx_buf *b, size_t n,
                      int64_t deadline, const wx__frame *f, wx_error *err)
{
    const wx__frame_sink *sink = f ? r->sink : NULL;
    size_t from_ahead = WX_MIN(n, r->ahead_len - r->ahead_pos);
    int rc = wx_buf_reserve(b, n, err);

    if (rc)
        return rc;
    if (sink)
        sink->begin(sink->ctx, f);
    memcpy(b->data + b->len, r->ahead + r->ahead_pos, from_ahead);
    r->ahead_pos += from_ahead;
    b->len += from_ahead;
    n -= from_ahead;
    while (n > 0) {
        ssize_t got;

        if (sink && b->len)
            sink->arrived(sink->ctx, f, b->len);
        got = read_some(r->fd, b->data + b->len, n, deadline, false, err);
        if (got < 0)
            return (int)got;
        if (got == 0)
            return wx_error_set(err, WX_ECRASHED,
                                "stream closed inside a frame body");
        b->len += (size_t)got;
        n -= (size_t)got;
    }
    if (sink)
        sink->arrived(sink->ctx, f, b->len);
    b->data[b->len] = '\0';
    return 0;
}

int wx__frame_read(wx__frame_reader *r, wx__frame *f, int64_t deadline,
                   bool *clean_eof, wx_error *err)
{
    wx__frame_header h;
    size_t att_total = 0;
    int rc;

    *clean_eof = false;
    rc = read_header(r, &h, deadline, clean_eof, err);
    if (rc)
        return rc;
    wx_buf_reset(&f->body);
    wx_buf_reset(&f->att);
    f->n_att = h.n_att;
    f->att_off[0] = 0;
    for (size_t i = 0; i < h.n_att; i++) {
        att_total += h.att_len[i];
        f->att_off[i + 1] = att_total;
    }
    rc = read_exact(r, &f->body, h.content_length, deadline, NULL, err);
    if (!rc && att_total)
        rc = read_exact(r, &f->att, att_total, deadline, f, err);
    return rc;
}

/* "Content-Length: N\r\n[Attachments: ...\r\n]\r\n" */
static int format_header(char *out, size_t max, size_t len,
                         const struct iovec *att, size_t n_att, size_t *used,
                         wx_error *err)
{
    size_t o = (size_t)snprintf(out, max, "Content-Length: %zu\r\n", len);
    size_t line_start = 0;
    int lines = 1;

    for (size_t i = 0; i < n_att; i++) {
        char item[24];
        size_t n = (size_t)snprintf(item, sizeof(item), "%zu",
                                    att[i].iov_len);

        if (i == 0 || o - line_start + n + 3 > WX_FRAME_LINE_MAX) {
            if (i)
                o += (size_t)snprintf(out + o, max - o, "\r\n");
            if (++lines >= WX_FRAME_LINES_MAX || o + 32 > max)
                return wx_error_set(err, WX_EINVAL,
                                    "too many attachments for one frame");
            line_start = o;
            o += (size_t)snprintf(out + o, max - o, "Attachments: ");
        } else {
            out[o++] = ',';
        }
        memcpy(out + o, item, n);
        o += n;
    }
    o += (size_t)snprintf(out + o, max - o, "%s\r\n", n_att ? "\r\n" : "");
    *used = o;
    return 0;
}

/* Drop the first `done` bytes from the iovec array. */
static void advance(struct iovec **iov, size_t *n, size_t done)
{
    while (*n > 0 && done >= (*iov)->iov_len) {
        done -= (*iov)->iov_len;
        (*iov)++;
        (*n)--;
    }
    if (*n > 0 && done > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + done;
        (*iov)->iov_len -= done;
    }
}

/* Set once a process ignores SIGPIPE for good: no masking needed. */
static atomic_bool sigpipe_ignored;

void wx__frame_sigpipe_ignored(void)
{
    atomic_store(&sigpipe_ignored, true);
}

/* writev() everything, retrying short writes. */
static int write_iov(int fd, struct iovec *iov, size_t n, int64_t deadline,
                     wx_error *err)
{
    int rc = 0;

    while (n > 0 && !rc) {
        ssize_t w = writev(fd, iov, (int)WX_MIN(n, (size_t)IOV_MAX));

        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                rc = wait_fd(fd, POLLOUT, deadline, err);
            else if (errno == EPIPE)
                rc = wx_error_set(err, WX_ECRASHED,
                                  "the other side closed the stream");
            else
                rc = wx_error_set_sys(err, WX_EIO, errno, "write");
            continue;
        }
        advance(&iov, &n, (size_t)w);
    }
    return rc;
}

/*
 * write_iov() with SIGPIPE blocked for
 * this thread while writing and a SIGPIPE caused here is consumed, so a
 * dead reader shows up as EPIPE and never kills the process.
 */
static int write_all(int fd, struct iovec *iov, size_t n, int64_t deadline,
                     wx_error *err)
{
    sigset_t pipe_set, old_set, pending;
    bool was_pending;
    int rc = 0;

    if (atomic_load_explicit(&sigpipe_ignored, memory_order_relaxed))
        return write_iov(fd, iov, n, deadline, err);
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    rc = write_iov(fd, iov, n, deadline, err);
    if (rc == WX_ECRASHED && !was_pending) {
        struct timespec zero = {0, 0};

        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    return rc;
}

/* Set by a writer whose attachments stay untouched after the write. */
static atomic_bool splice_ok;

void wx__frame_splice_attachments(void)
{
    atomic_store(&splice_ok, true);
}

static size_t total_len(const struct iovec *iov, size_t n)
{
    size_t sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += iov[i].iov_len;
    return sum;
}

/*
 * vmsplice() the attachments into the pipe `fd`: the reader copies
 * straight from our pages, one copy instead of two.  A non-pipe fd falls
 * back to write_all().
 */
static int splice_all(int fd, struct iovec *iov, size_t n, int64_t deadline,
                      wx_error *err)
{
    while (n > 0) {
        ssize_t w = vmsplice(fd, iov, WX_MIN(n, (size_t)IOV_MAX), 0);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            int rc = wait_fd(fd, POLLOUT, deadline, err);

            if (rc)
                return rc;
            continue;
        }
        if (w < 0 && errno == EPIPE)
            return wx_error_set(err, WX_ECRASHED,
                                "the other side closed the stream");
        if (w < 0)
            return write_all(fd, iov, n, deadline, err);
        advance(&iov, &n, (size_t)w);
    }
    return 0;
}

int wx__frame_append(wx_buf *out, const char *body, size_t len,
                     wx_error *err)
{
    char header[64];
    size_t used = 0;
    int rc = format_header(header, sizeof(header), len, NULL, 0, &used, err);

    if (!rc)
        rc = wx_buf_reserve(out, used + len, err);
    if (!rc) {
        wx_buf_append(out, header, used, NULL);
        wx_buf_append(out, body, len, NULL);
    }
    return rc;
}

int wx__frame_write_framed(int fd, const char *data, size_t len,
                           int64_t deadline, wx_error *err)
{
    struct iovec iov = {(void *)data, len};

    return write_all(fd, &iov, 1, deadline, err);
}

int wx__frame_write(int fd, const char *body, size_t len,
                    const struct iovec *att, size_t n_att, int64_t deadline,
                    wx_error *err)
{
    char header[WX_FRAME_LINE_MAX * WX_FRAME_LINES_MAX];
    struct iovec iov[WX_FRAME_ATT_MAX + 2];
    size_t used = 0;
    int rc;

    if (n_att > WX_FRAME_ATT_MAX)
        return wx_error_set(err, WX_EINVAL,
                            "more than %d attachments in a frame",
                            WX_FRAME_ATT_MAX);
    rc = format_header(header, sizeof(header), len, att, n_att, &used, err);
    if (rc)
        return rc;
    iov[0] = (struct iovec){header, used};
    iov[1] = (struct iovec){(void *)body, len};
    if (n_att)
        memcpy(iov + 2, att, n_att * sizeof(*att));
    if (atomic_load_explicit(&splice_ok, memory_order_relaxed) &&
        total_len(att, n_att) >= SPLICE_MIN) {
        rc = write_all(fd, iov, 2, deadline, err);
        return rc ? rc : splice_all(fd, iov + 2, n_att, deadline, err);
    }
    return write_all(fd, iov, n_att + 2, deadline, err);
}
