/* Content-Length frames: header parsing, limits, round trips, deadlines. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "clock.h"
#include "frame.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A header struct is 8 KiB: keep it off the stack. */
static wx__frame_header g_h;

static int parse_n(const char *s, size_t len, size_t max_frame,
                   size_t *consumed, wx_error *err)
{
    *consumed = (size_t)-1;
    return wx__frame_parse_header(s, len, max_frame, &g_h, consumed, err);
}

static int parse(const char *s, size_t max_frame, size_t *consumed,
                 wx_error *err)
{
    return parse_n(s, strlen(s), max_frame, consumed, err);
}

/* The header block `s` must parse, whole, with Content-Length `cl`. */
static void expect_header(const char *s, size_t cl)
{
    wx_error err = WX_ERROR_INIT;
    size_t consumed;

    assert_ok(parse(s, 1u << 30, &consumed, &err), &err);
    assert_int_equal(g_h.content_length, cl);
    assert_int_equal(consumed, strlen(s));
}

static void expect_proto(const char *s, size_t max_frame, const char *needle)
{
    wx_error err = WX_ERROR_INIT;
    size_t consumed;

    assert_fails(parse(s, max_frame, &consumed, &err), WX_EPROTO, &err,
                 needle);
}

static void test_parse_basic(void **state)
{
    static const char text[] = "Content-Length: 5\r\n\r\nhello";
    wx_error err = WX_ERROR_INIT;
    size_t consumed;

    assert_ok(parse(text, 1u << 30, &consumed, &err), &err);
    assert_int_equal(g_h.content_length, 5);
    assert_int_equal(g_h.n_att, 0);
    assert_int_equal(consumed, strlen("Content-Length: 5\r\n\r\n"));
    /* The body is not part of the block: the same without it. */
    expect_header("Content-Length: 0\r\n\r\n", 0);
}

static void test_parse_names_case_insensitive_lf_unknown(void **state)
{
    expect_header("content-length: 12\n\n", 12);
    expect_header("CONTENT-LENGTH: 3\r\n\r\n", 3);
    expect_header("CoNtEnT-LeNgTh:7\r\n\r\n", 7);
    /* Spaces and tabs around the value and the name. */
    expect_header("Content-Length: \t 42 \t\r\n\r\n", 42);
    /* Unknown headers are ignored, before and after. */
    expect_header("X-Foo: bar\r\nContent-Length: 9\r\nContent-Type: "
                  "application/json\r\nX-Empty:\r\n\r\n", 9);
    /* LF-only and CRLF lines mixed; more than one CR is tolerated. */
    expect_header("Content-Length: 2\nX: y\r\n\n", 2);
    expect_header("Content-Length: 2\r\r\n\r\n", 2);
    /* A header named like ours but longer is another header. */
    expect_proto("Content-Length-X: 5\r\n\r\n", 1u << 30,
                 "missing Content-Length");
}

static void test_parse_content_length_strict(void **state)
{
    static const char *const bad[] = {
        "", "+5", "-5", "5x", "0x10", "1e3", "5 5", "5.0", "five",
        "99999999999999999999" /* 20 digits */};
    char text[128];

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(text, sizeof(text), "Content-Length: %s\r\n\r\n", bad[i]);
        expect_proto(text, SIZE_MAX, "invalid Content-Length");
    }
    expect_header("Content-Length: 007\r\n\r\n", 7);
    expect_proto("Content-Length 5\r\n\r\n", 1u << 30, "invalid header line");
}

static void test_parse_duplicates(void **state)
{
    expect_header("Content-Length: 5\r\ncontent-length: 5\r\n\r\n", 5);
    expect_proto("Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 1u << 30,
                 "conflicting Content-Length");
    expect_proto("Content-Length: 5\r\nContent-Length: x\r\n\r\n", 1u << 30,
                 "invalid Content-Length");
    expect_proto("\r\n", 1u << 30, "missing Content-Length");
    expect_proto("X-Foo: 1\r\n\r\n", 1u << 30, "missing Content-Length");
}

static void test_parse_bytes_outside_a_frame(void **state)
{
    expect_proto("hello from print()\nContent-Length: 2\r\n\r\n{}", 1u << 30,
                 "bytes outside a frame");
    /* The message quotes the line, made printable. */
    expect_proto("\x01\x02 oops\n", 1u << 30, "\\x01\\x02 oops");
}

static void test_parse_attachments(void **state)
{
    static const char text[] = "Content-Length: 2\r\nAttachments: 1, 0 ,"
                               "70000\r\nattachments:3\r\nATTACHMENTS: 4\r\n"
                               "\r\n";
    wx_error err = WX_ERROR_INIT;
    size_t consumed;

    assert_ok(parse(text, 1u << 30, &consumed, &err), &err);
    assert_int_equal(consumed, strlen(text));
    assert_int_equal(g_h.content_length, 2);
    assert_int_equal(g_h.n_att, 5);
    assert_int_equal(g_h.att_len[0], 1);
    assert_int_equal(g_h.att_len[1], 0);
    assert_int_equal(g_h.att_len[2], 70000);
    assert_int_equal(g_h.att_len[3], 3);
    assert_int_equal(g_h.att_len[4], 4);
    /* Attachments before Content-Length count too. */
    assert_ok(parse("Attachments: 8\nContent-Length: 1\n\n", 1u << 30,
                    &consumed, &err),
              &err);
    assert_int_equal(g_h.n_att, 1);
    assert_int_equal(g_h.att_len[0], 8);
    expect_proto("Content-Length: 2\r\nAttachments: 1,,2\r\n\r\n", 1u << 30,
                 "invalid Attachments");
    expect_proto("Content-Length: 2\r\nAttachments: 1,x\r\n\r\n", 1u << 30,
                 "invalid Attachments");
    expect_proto("Content-Length: 2\r\nAttachments: -1\r\n\r\n", 1u << 30,
                 "invalid Attachments");
    expect_proto("Content-Length: 2\r\nAttachments: 1,\r\n\r\n", 1u << 30,
                 "invalid Attachments");
}

/* "X-Pad: aaa...\r\n" of exactly `n` bytes (with `eol`). */
static void pad_line(char *out, size_t n, const char *eol)
{
    size_t head = strlen("X-Pad: "), tail = strlen(eol);

    memcpy(out, "X-Pad: ", head);
    memset(out + head, 'a', n - head - tail);
    memcpy(out + n - tail, eol, tail);
    out[n] = '\0';
}

static void test_limit_line_length(void **state)
{
    static const char *const eols[] = {"\r\n", "\n"};
    char text[4096], line[2048];
    wx_error err = WX_ERROR_INIT;
    size_t consumed;

    for (size_t e = 0; e < 2; e++) {
        pad_line(line, WX_FRAME_LINE_MAX, eols[e]);
        snprintf(text, sizeof(text), "Content-Length: 1\r\n%s\r\n", line);
        expect_header(text, 1);
        pad_line(line, WX_FRAME_LINE_MAX + 1, eols[e]);
        snprintf(text, sizeof(text), "Content-Length: 1\r\n%s\r\n", line);
        expect_proto(text, 1u << 30, "header line longer than 1024 bytes");
    }
    /* A first line: the same limit. */
    memset(line, ' ', sizeof(line));
    memcpy(line, "Content-Length:", 15);
    memcpy(line + WX_FRAME_LINE_MAX - 3, "7\r\n\r\n", 6);
    expect_header(line, 7);
    assert_int_equal(strlen(line), WX_FRAME_LINE_MAX + 2);
    line[WX_FRAME_LINE_MAX - 3] = ' ';
    strcpy(line + WX_FRAME_LINE_MAX - 2, "7\r\n\r\n");
    expect_proto(line, 1u << 30, "longer than");
    /* An unfinished line: 1023 bytes may still end in time, 1024 not. */
    memset(line, 'a', sizeof(line));
    memcpy(line, "Content-Length: 1\r\nX: ", 22);
    assert_int_equal(parse_n(line, 19 + WX_FRAME_LINE_MAX - 1, 1u << 30,
                             &consumed, &err),
                     1);
    assert_fails(parse_n(line, 19 + WX_FRAME_LINE_MAX, 1u << 30, &consumed,
                         &err),
                 WX_EPROTO, &err, "longer than");
}

static void test_limit_line_count(void **state)
{
    char text[1024] = "Content-Length: 1\r\n";

    /* 16 lines in the block (the blank line included) pass, 17 do not. */
    for (int i = 0; i < WX_FRAME_LINES_MAX - 2; i++)
        strcat(text, "X-Line: 1\r\n");
    strcat(text, "\r\n");
    expect_header(text, 1);
    text[strlen(text) - 2] = '\0';
    strcat(text, "X-Line: 1\r\n\r\n");
    expect_proto(text, 1u << 30, "header lines");
    /* Even before the 17th line is complete. */
    text[strlen(text) - 2] = '\0';
    strcat(text, "X-Li");
    expect_proto(text, 1u << 30, "header lines");
}

static void test_limit_max_frame(void **state)
{
    wx_error err = WX_ERROR_INIT;
    size_t consumed;

    assert_ok(parse("Content-Length: 100\r\n\r\n", 100, &consumed, &err),
              &err);
    expect_proto("Content-Length: 101\r\n\r\n", 100, "max_frame_bytes (100)");
    assert_ok(parse("Content-Length: 60\r\nAttachments: 30,10\r\n\r\n", 100,
                    &consumed, &err),
              &err);
    expect_proto("Content-Length: 60\r\nAttachments: 30,11\r\n\r\n", 100,
                 "max_frame_bytes");
    assert_ok(parse("Content-Length: 0\r\nAttachments: 100\r\n\r\n", 100,
                    &consumed, &err),
              &err);
    expect_proto("Content-Length: 0\r\nAttachments: 101\r\n\r\n", 100,
                 "max_frame_bytes");
    expect_proto("Content-Length: 1\r\nAttachments: 18446744073709551\r\n"
                 "Attachments: 18446744073709551\r\n\r\n",
                 1u << 30, "max_frame_bytes");
    expect_proto("Content-Length: 2147483648\r\n\r\n", 1u << 30,
                 "max_frame_bytes");
}

/*
 * A Content-Length over max_frame must be refused even when attachment
 * lengths make the 64-bit sum wrap around to a small number:
 * 9999999999999999999 + 8446744073709551617 = 2^64.
 */
static void test_limit_max_frame_no_wraparound(void **state)
{
    expect_proto("Content-Length: 9999999999999999999\r\n"
                 "Attachments: 8446744073709551617\r\n\r\n",
                 1u << 30, "max_frame_bytes");
    expect_proto("Content-Length: 9999999999999999999\r\n"
                 "Attachments: 8446744073709551617,5\r\n\r\n",
                 1u << 30, "max_frame_bytes");
}

/* "Content-Length: 0" and `n` zero-length attachments, 400 a line. */
static char *many_attachments(size_t n)
{
    char *text = malloc(64 + n * 2 + (n / 400 + 1) * 16);
    size_t o = (size_t)sprintf(text, "Content-Length: 0\r\n");

    for (size_t i = 0; i < n; i++) {
        if (i % 400 == 0)
            o += (size_t)sprintf(text + o, "%sAttachments: ",
                                 i ? "\r\n" : "");
        else
            text[o++] = ',';
        text[o++] = '0';
    }
    sprintf(text + o, "\r\n\r\n");
    return text;
}

static void test_limit_attachment_count(void **state)
{
    char *ok = many_attachments(WX_FRAME_ATT_MAX);
    char *over = many_attachments(WX_FRAME_ATT_MAX + 1);
    wx_error err = WX_ERROR_INIT;
    size_t consumed;

    assert_ok(parse(ok, 1u << 30, &consumed, &err), &err);
    assert_int_equal(g_h.n_att, WX_FRAME_ATT_MAX);
    assert_int_equal(consumed, strlen(ok));
    expect_proto(over, 1u << 30, "more than 1024 attachments");
    free(ok);
    free(over);
}

static void test_incomplete_returns_1(void **state)
{
    static const char text[] = "content-length: 12\r\nAttachments: 3,4\r\n"
                               "X-Other: 1\n\r\n";
    wx_error err = WX_ERROR_INIT;
    size_t consumed;

    /* Every proper prefix needs more bytes; the whole block parses. */
    for (size_t n = 0; n < strlen(text); n++)
        if (parse_n(text, n, 1u << 30, &consumed, &err) != 1)
            fail_msg("prefix of %zu bytes did not ask for more: %s", n,
                     err.message);
    assert_ok(parse_n(text, strlen(text), 1u << 30, &consumed, &err), &err);
    assert_int_equal(consumed, strlen(text));
    assert_int_equal(g_h.n_att, 2);
}

/* ---- frames over pipes ---- */

static void make_pipe(int fds[2], bool nonblock_read, bool nonblock_write)
{
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    if (nonblock_read)
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
    if (nonblock_write)
        fcntl(fds[1], F_SETFL, O_NONBLOCK);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131 + seed + (i >> 8));
    return p;
}

typedef struct test_frame {
    size_t body_len;
    size_t n_att;
    size_t att_len[8];
} test_frame;

static const test_frame g_frames[] = {
    {0, 0, {0}},
    {65536, 0, {0}},
    {70000, 0, {0}},
    {1u << 20, 5, {0, 1, 70000, 1u << 20, 3}},
    {2, 2, {0, 0}},
    {0, 1, {65536}},
};

typedef struct writer {
    int fd;
    int rc;
    wx_error err;
} writer;

static void *write_frames(void *arg)
{
    writer *w = arg;
    int64_t deadline = wx__deadline_after(30);

    for (size_t f = 0; f < ARRAY_LEN(g_frames) && !w->rc; f++) {
        const test_frame *t = &g_frames[f];
        uint8_t *body = pattern(t->body_len, (unsigned)f);
        struct iovec att[8];

        for (size_t i = 0; i < t->n_att; i++)
            att[i] = (struct iovec){
                pattern(t->att_len[i], (unsigned)(f * 10 + i)),
                t->att_len[i]};
        w->rc = wx__frame_write(w->fd, (const char *)body, t->body_len, att,
                                t->n_att, deadline, &w->err);
        for (size_t i = 0; i < t->n_att; i++)
            free(att[i].iov_base);
        free(body);
    }
    close(w->fd);
    return NULL;
}

static void test_round_trips_over_a_pipe(void **state)
{
    int fds[2];
    writer w = {0, 0, WX_ERROR_INIT};
    pthread_t th;
    wx__frame_reader r;
    wx__frame f;
    wx_error err = WX_ERROR_INIT;
    bool clean_eof = true;
    int64_t deadline = wx__deadline_after(30);

    make_pipe(fds, true, true);
    w.fd = fds[1];
    assert_ok(wx__frame_reader_init(&r, fds[0], 8u << 20, &err), &err);
    wx__frame_init(&f, 8u << 20);
    assert_int_equal(pthread_create(&th, NULL, write_frames, &w), 0);
    for (size_t k = 0; k < ARRAY_LEN(g_frames); k++) {
        const test_frame *t = &g_frames[k];
        uint8_t *body = pattern(t->body_len, (unsigned)k);

        assert_ok(wx__frame_read(&r, &f, deadline, &clean_eof, &err), &err);
        assert_int_equal(f.body.len, t->body_len);
        assert_memory_equal(f.body.data, body, t->body_len);
        assert_int_equal(f.body.data[t->body_len], '\0');
        assert_int_equal(f.n_att, t->n_att);
        for (size_t i = 0; i < t->n_att; i++) {
            uint8_t *att = pattern(t->att_len[i], (unsigned)(k * 10 + i));

            assert_int_equal(f.att_off[i + 1] - f.att_off[i], t->att_len[i]);
            assert_memory_equal(f.att.data + f.att_off[i], att,
                                t->att_len[i]);
            free(att);
        }
        free(body);
    }
    /* Then the writer closes: end of file between frames is clean. */
    assert_fails(wx__frame_read(&r, &f, deadline, &clean_eof, &err),
                 WX_ECRASHED, &err, "stream closed");
    assert_true(clean_eof);
    pthread_join(th, NULL);
    assert_ok(w.rc, &w.err);
    wx__frame_release(&f);
    wx__frame_reader_release(&r);
    close(fds[0]);
}

/* A sink that checks what it hears against the frames of g_frames. */
typedef struct recorder {
    size_t frame;       /* index in g_frames of the frame being read */
    size_t begins;      /* begin calls for it */
    size_t last;        /* bytes of the last arrived call */
    size_t calls;       /* arrived calls for it */
    const char *data;   /* f->att.data at begin */
    uint8_t *expected;  /* its attachments back to back */
} recorder;

static void rec_begin(void *ctx, const wx__frame *f)
{
    recorder *r = ctx;

    r->begins++;
    r->data = f->att.data;
    assert_int_equal(f->n_att, g_frames[r->frame].n_att);
}

static void rec_arrived(void *ctx, const wx__frame *f, size_t n)
{
    recorder *r = ctx;

    assert_int_equal(r->begins, 1);
    assert_ptr_equal(f->att.data, r->data);
    assert_true(n > r->last);
    /* The bytes it announces are there. */
    assert_memory_equal(f->att.data, r->expected, n);
    r->last = n;
    r->calls++;
}

/* g_frames[k]'s attachments back to back, as write_frames() sends them. */
static uint8_t *expected_attachments(size_t k, size_t *total)
{
    const test_frame *t = &g_frames[k];
    uint8_t *all;

    *total = 0;
    for (size_t i = 0; i < t->n_att; i++)
        *total += t->att_len[i];
    all = malloc(*total ? *total : 1);
    for (size_t i = 0, at = 0; i < t->n_att; i++) {
        uint8_t *one = pattern(t->att_len[i], (unsigned)(k * 10 + i));

        memcpy(all + at, one, t->att_len[i]);
        at += t->att_len[i];
        free(one);
    }
    return all;
}

/*
 * A reader's sink hears about a frame's attachments while they arrive:
 * one begin, then growing byte counts up to the total, each covering
 * bytes already in place; nothing for a frame without attachment bytes.
 */
static void test_sink_hears_attachments_as_they_arrive(void **state)
{
    int fds[2];
    writer w = {0, 0, WX_ERROR_INIT};
    recorder rec = {0};
    wx__frame_sink sink = {rec_begin, rec_arrived, &rec};
    pthread_t th;
    wx__frame_reader r;
    wx__frame f;
    wx_error err = WX_ERROR_INIT;
    bool clean_eof;
    int64_t deadline = wx__deadline_after(30);

    (void)state;
    make_pipe(fds, true, true);
    w.fd = fds[1];
    assert_ok(wx__frame_reader_init(&r, fds[0], 8u << 20, &err), &err);
    r.sink = &sink;
    wx__frame_init(&f, 8u << 20);
    assert_int_equal(pthread_create(&th, NULL, write_frames, &w), 0);
    for (size_t k = 0; k < ARRAY_LEN(g_frames); k++) {
        size_t total;

        rec = (recorder){.frame = k,
                         .expected = expected_attachments(k, &total)};
        assert_ok(wx__frame_read(&r, &f, deadline, &clean_eof, &err), &err);
        assert_int_equal(rec.begins, total ? 1 : 0);
        assert_int_equal(rec.last, total);
        if (total)
            assert_ptr_equal(f.att.data, rec.data);
        /* More than 1 MiB cannot come in one read of a pipe. */
        if (total > (1u << 20))
            assert_true(rec.calls > 1);
        free(rec.expected);
    }
    pthread_join(th, NULL);
    assert_ok(w.rc, &w.err);
    wx__frame_release(&f);
    wx__frame_reader_release(&r);
    close(fds[0]);
}

typedef struct many_writer {
    int fd;
    size_t n;
    int rc;
    wx_error err;
} many_writer;

static void *write_many(void *arg)
{
    many_writer *w = arg;
    struct iovec *att = calloc(w->n, sizeof(*att));
    static const char bytes[16] = "0123456789abcdef";

    for (size_t i = 0; i < w->n; i++)
        att[i] = (struct iovec){(void *)bytes, i % 7};
    w->rc = wx__frame_write(w->fd, "{}", 2, att, w->n,
                            wx__deadline_after(30), &w->err);
    free(att);
    close(w->fd);
    return NULL;
}

static void test_round_trip_1024_attachments(void **state)
{
    int fds[2];
    many_writer w = {0, WX_FRAME_ATT_MAX, 0, WX_ERROR_INIT};
    pthread_t th;
    wx__frame_reader r;
    wx__frame f;
    wx_error err = WX_ERROR_INIT;
    bool clean_eof;
    struct iovec one = {(void *)"x", 1}, *too_many;
    char byte;

    make_pipe(fds, true, true);
    w.fd = fds[1];
    assert_ok(wx__frame_reader_init(&r, fds[0], 1u << 20, &err), &err);
    wx__frame_init(&f, 1u << 20);
    assert_int_equal(pthread_create(&th, NULL, write_many, &w), 0);
    assert_ok(wx__frame_read(&r, &f, wx__deadline_after(30), &clean_eof,
                             &err),
              &err);
    pthread_join(th, NULL);
    assert_ok(w.rc, &w.err);
    assert_int_equal(f.n_att, WX_FRAME_ATT_MAX);
    for (size_t i = 0; i < WX_FRAME_ATT_MAX; i++) {
        assert_int_equal(f.att_off[i + 1] - f.att_off[i], i % 7);
        assert_memory_equal(f.att.data + f.att_off[i], "0123456789abcdef",
                            i % 7);
    }
    wx__frame_release(&f);
    wx__frame_reader_release(&r);
    close(fds[0]);
    /* One more is refused by the writer, before anything is written. */
    too_many = calloc(WX_FRAME_ATT_MAX + 1, sizeof(*too_many));
    for (size_t i = 0; i <= WX_FRAME_ATT_MAX; i++)
        too_many[i] = one;
    make_pipe(fds, true, true);
    assert_fails(wx__frame_write(fds[1], "{}", 2, too_many,
                                 WX_FRAME_ATT_MAX + 1, wx__deadline_after(5),
                                 &err),
                 WX_EINVAL, &err, "attachments");
    close(fds[1]);
    assert_int_equal(read(fds[0], &byte, 1), 0);
    close(fds[0]);
    free(too_many);
}

/* Frames written by hand: what the reader makes of each. */
static int read_text(const char *text, size_t max_frame, bool close_after,
                     int64_t deadline, bool *clean_eof, wx_error *err,
                     wx__frame *f)
{
    int fds[2], rc;
    wx__frame_reader r;

    make_pipe(fds, true, true);
    assert_int_equal(write(fds[1], text, strlen(text)), (ssize_t)strlen(text));
    if (close_after)
        close(fds[1]);
    assert_ok(wx__frame_reader_init(&r, fds[0], max_frame, err), err);
    rc = wx__frame_read(&r, f, deadline, clean_eof, err);
    wx__frame_reader_release(&r);
    close(fds[0]);
    if (!close_after)
        close(fds[1]);
    return rc;
}

/* Read `text` (then end of file if `close_after`): `code`, `needle`. */
static void expect_read(const char *text, size_t max_frame, bool close_after,
                        int code, const char *needle, bool clean)
{
    wx__frame f;
    wx_error err = WX_ERROR_INIT;
    bool clean_eof = !clean;

    wx__frame_init(&f, max_frame);
    assert_fails(read_text(text, max_frame, close_after, wx__now_ms() + 200,
                           &clean_eof, &err, &f),
                 code, &err, needle);
    assert_int_equal(clean_eof, clean);
    wx__frame_release(&f);
}

static void test_eof_before_and_inside_a_frame(void **state)
{
    expect_read("", 1u << 20, true, WX_ECRASHED, "stream closed", true);
    expect_read("Content-Length: 1", 1u << 20, true, WX_ECRASHED,
                "inside a frame header", false);
    expect_read("Content-Length: 2\r\n", 1u << 20, true, WX_ECRASHED,
                "inside a frame header", false);
    expect_read("Content-Length: 10\r\n\r\n{}", 1u << 20, true, WX_ECRASHED,
                "inside a frame body", false);
    expect_read("Content-Length: 2\r\nAttachments: 5\r\n\r\n{}ab", 1u << 20,
                true, WX_ECRASHED, "inside a frame", false);
    /* Malformed input is a protocol error, not end of file. */
    expect_read("hello from print()\n", 1u << 20, true, WX_EPROTO,
                "bytes outside a frame", false);
    expect_read("Content-Length: 2048\r\n\r\n{}", 1024, false, WX_EPROTO,
                "max_frame_bytes", false);
}

static void test_read_deadline_passes(void **state)
{
    wx__frame f;
    wx_error err = WX_ERROR_INIT;
    bool clean_eof = true;
    int fds[2];
    wx__frame_reader r;
    int64_t start, elapsed;

    wx__frame_init(&f, 1u << 20);
    /* Nothing at all, then half a frame: both time out at the deadline. */
    for (int partial = 0; partial < 2; partial++) {
        make_pipe(fds, true, true);
        if (partial)
            assert_int_equal(write(fds[1], "Content-Length: 10\r\n\r\n{", 23),
                             23);
        assert_ok(wx__frame_reader_init(&r, fds[0], 1u << 20, &err), &err);
        start = wx__now_ms();
        assert_fails(wx__frame_read(&r, &f, start + 250, &clean_eof, &err),
                     WX_ETIMEDOUT, &err, "deadline");
        elapsed = wx__now_ms() - start;
        assert_false(clean_eof);
        if (elapsed < 240 || elapsed > 2000)
            fail_msg("timed out after %lld ms, deadline 250 ms",
                     (long long)elapsed);
        wx__frame_reader_release(&r);
        close(fds[0]);
        close(fds[1]);
    }
    /* A deadline already passed still returns what is there. */
    assert_ok(read_text("Content-Length: 2\r\n\r\n{}", 1u << 20, false,
                        wx__now_ms() - 1, &clean_eof, &err, &f),
              &err);
    assert_string_equal(f.body.data, "{}");
    wx__frame_release(&f);
}

static void test_write_to_closed_reader_is_crashed_not_sigpipe(void **state)
{
    int fds[2];
    wx_error err = WX_ERROR_INIT;
    sigset_t pending;
    void (*old)(int) = signal(SIGPIPE, SIG_DFL);
    char *big = calloc(1, 1u << 20);

    make_pipe(fds, true, true);
    close(fds[0]);
    /* SIGPIPE's default action would end this process here. */
    assert_fails(wx__frame_write(fds[1], "{}", 2, NULL, 0,
                                 wx__deadline_after(5), &err),
                 WX_ECRASHED, &err, "closed");
    assert_fails(wx__frame_write(fds[1], big, 1u << 20, NULL, 0,
                                 wx__deadline_after(5), &err),
                 WX_ECRASHED, &err, "closed");
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    close(fds[1]);
    /* A blocking fd behaves the same. */
    make_pipe(fds, false, false);
    close(fds[0]);
    assert_fails(wx__frame_write(fds[1], "{}", 2, NULL, 0, WX_NO_DEADLINE,
                                 &err),
                 WX_ECRASHED, &err, "closed");
    close(fds[1]);
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    signal(SIGPIPE, old);
    free(big);
}

/*
 * Once the process ignores SIGPIPE for good (wx__frame_sigpipe_ignored),
 * writes skip the masking and a closed reader is still WX_ECRASHED.
 * Process-wide and irreversible, so this test runs last.
 */
static void test_closed_reader_when_sigpipe_ignored(void **state)
{
    int fds[2];
    wx_error err = WX_ERROR_INIT;

    signal(SIGPIPE, SIG_IGN);
    wx__frame_sigpipe_ignored();
    make_pipe(fds, true, true);
    close(fds[0]);
    assert_fails(wx__frame_write(fds[1], "{}", 2, NULL, 0,
                                 wx__deadline_after(5), &err),
                 WX_ECRASHED, &err, "closed");
    close(fds[1]);
}

static void test_blocked_writer_times_out(void **state)
{
    int fds[2];
    wx_error err = WX_ERROR_INIT;
    char *big = calloc(1, 1u << 20);
    int64_t start, elapsed;
    struct iovec att = {big, 1u << 20};

    make_pipe(fds, false, true);
    start = wx__now_ms();
    assert_fails(wx__frame_write(fds[1], big, 1u << 20, &att, 1, start + 300,
                                 &err),
                 WX_ETIMEDOUT, &err, "deadline");
    elapsed = wx__now_ms() - start;
    if (elapsed < 290 || elapsed > 2000)
        fail_msg("timed out after %lld ms, deadline 300 ms",
                 (long long)elapsed);
    close(fds[0]);
    close(fds[1]);
    free(big);
}

/* A second frame's bytes read ahead with the first are kept for it. */
static void test_back_to_back_frames_in_one_read(void **state)
{
    static const char text[] = "Content-Length: 2\r\n\r\n{}"
                               "content-length: 3\nattachments: 2,1\n\n"
                               "[1]abc"
                               "Content-Length: 0\r\n\r\n";
    int fds[2];
    wx__frame_reader r;
    wx__frame f;
    wx_error err = WX_ERROR_INIT;
    bool clean_eof;

    make_pipe(fds, true, true);
    assert_int_equal(write(fds[1], text, sizeof(text) - 1),
                     (ssize_t)sizeof(text) - 1);
    close(fds[1]);
    assert_ok(wx__frame_reader_init(&r, fds[0], 1024, &err), &err);
    wx__frame_init(&f, 1024);
    assert_ok(wx__frame_read(&r, &f, wx__deadline_after(5), &clean_eof,
                             &err),
              &err);
    assert_string_equal(f.body.data, "{}");
    assert_int_equal(f.n_att, 0);
    assert_ok(wx__frame_read(&r, &f, wx__deadline_after(5), &clean_eof,
                             &err),
              &err);
    assert_string_equal(f.body.data, "[1]");
    assert_int_equal(f.n_att, 2);
    assert_memory_equal(f.att.data, "abc", 3);
    assert_int_equal(f.att_off[1], 2);
    assert_int_equal(f.att_off[2], 3);
    assert_ok(wx__frame_read(&r, &f, wx__deadline_after(5), &clean_eof,
                             &err),
              &err);
    assert_int_equal(f.body.len, 0);
    assert_int_equal(f.n_att, 0);
    assert_fails(wx__frame_read(&r, &f, wx__deadline_after(5), &clean_eof,
                                &err),
                 WX_ECRASHED, &err, "stream closed");
    assert_true(clean_eof);
    wx__frame_release(&f);
    wx__frame_reader_release(&r);
    close(fds[0]);
}

/* The header the writer produces: attachments split over lines <= 1 KiB. */
static void test_writer_header_format(void **state)
{
    enum { N = 600 };
    int fds[2];
    struct iovec *att = calloc(N, sizeof(*att));
    static char bytes[N];
    char *buf = malloc(1u << 16);
    ssize_t n;
    size_t consumed, line_start = 0;
    wx_error err = WX_ERROR_INIT;

    for (size_t i = 0; i < N; i++)
        att[i] = (struct iovec){bytes, i % 2 ? 1 : 0};
    make_pipe(fds, true, true);
    assert_ok(wx__frame_write(fds[1], "{}", 2, att, N, wx__deadline_after(5),
                              &err),
              &err);
    n = read(fds[0], buf, 1u << 16);
    assert_true(n > 0);
    assert_ok(parse_n(buf, (size_t)n, 1u << 20, &consumed, &err), &err);
    assert_int_equal(g_h.n_att, N);
    assert_int_equal(consumed + 2 + N / 2, (size_t)n);
    assert_memory_equal(buf, "Content-Length: 2\r\nAttachments: 0,1,0,1", 39);
    for (size_t i = 0; i < consumed; i++) {
        if (buf[i] != '\n')
            continue;
        assert_true(i + 1 - line_start <= WX_FRAME_LINE_MAX);
        assert_int_equal(buf[i - 1], '\r');
        line_start = i + 1;
    }
    /* No attachments: no Attachments line. */
    assert_ok(wx__frame_write(fds[1], "{}", 2, NULL, 0, wx__deadline_after(5),
                              &err),
              &err);
    n = read(fds[0], buf, 1u << 16);
    assert_int_equal(n, 23);
    assert_memory_equal(buf, "Content-Length: 2\r\n\r\n{}", 23);
    close(fds[0]);
    close(fds[1]);
    free(att);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_basic),
        cmocka_unit_test(test_parse_names_case_insensitive_lf_unknown),
        cmocka_unit_test(test_parse_content_length_strict),
        cmocka_unit_test(test_parse_duplicates),
        cmocka_unit_test(test_parse_bytes_outside_a_frame),
        cmocka_unit_test(test_parse_attachments),
        cmocka_unit_test(test_limit_line_length),
        cmocka_unit_test(test_limit_line_count),
        cmocka_unit_test(test_limit_max_frame),
        cmocka_unit_test(test_limit_max_frame_no_wraparound),
        cmocka_unit_test(test_limit_attachment_count),
        cmocka_unit_test(test_incomplete_returns_1),
        cmocka_unit_test(test_round_trips_over_a_pipe),
        cmocka_unit_test(test_round_trip_1024_attachments),
        cmocka_unit_test(test_sink_hears_attachments_as_they_arrive),
        cmocka_unit_test(test_back_to_back_frames_in_one_read),
        cmocka_unit_test(test_writer_header_format),
        cmocka_unit_test(test_eof_before_and_inside_a_frame),
        cmocka_unit_test(test_read_deadline_passes),
        cmocka_unit_test(test_write_to_closed_reader_is_crashed_not_sigpipe),
        cmocka_unit_test(test_blocked_writer_times_out),
        cmocka_unit_test(test_closed_reader_when_sigpipe_ignored),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
