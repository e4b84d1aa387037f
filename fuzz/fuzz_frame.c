/*
 * Fuzz target: the worker-protocol frames and JSON-RPC envelopes, which is
 * everything warmexec reads from an untrusted runner or manager.
 *
 * The input is a byte stream as it would arrive on a pipe:
 *
 *   1. wx__frame_parse_header() on it; when a header block parses, the
 *      bytes after it are the body and the attachments (as many as there
 *      are), the body goes through wx__rpc_parse_reply() (the manager's
 *      check of a reply), and a successful result through the readers of
 *      execute and aggregate results (wire.c), with the attachments.
 *   2. The whole stream is served by wx__rpc_serve(), the runner's loop:
 *      frame reading, the JSON-RPC request envelope checks, the -32700 /
 *      -32600 answers, notifications, and replies (with attachments and
 *      error objects) written to /dev/null.
 *
 * It must never crash, hang or leak.  Besides the sanitizers it checks the
 * header parser's own promises (the frame fits max_frame, the block was
 * consumed within the input) and aborts when one is broken.
 *
 * Built with libFuzzer by `make fuzz` (clang, -DWX_FUZZ=ON); every build
 * replays the seed corpus (fuzz/corpus/frame) with fuzz/replay.c.
 */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>

#include <warmexec/error.h>

#include "frame.h"
#include "rpc.h"
#include "wire.h"

/* Small, so that "just under / just over the limit" seeds stay small. */
#define FUZZ_MAX_FRAME ((size_t)1 << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_frame: broken promise: %s\n", what);
        abort();
    }
}

/* A connection whose last frame holds the given attachments. */
static void fake_conn(wx__rpc_conn *c, const wx__frame_header *h,
                      const uint8_t *att, size_t avail)
{
    size_t off = 0;

    memset(c, 0, sizeof(*c));
    wx__frame_init(&c->frame, FUZZ_MAX_FRAME);
    c->frame.n_att = 0;
    c->frame.att_off[0] = 0;
    for (size_t i = 0; i < h->n_att && off + h->att_len[i] <= avail; i++) {
        off += h->att_len[i];
        c->frame.att_off[i + 1] = off;
        c->frame.n_att = i + 1;
    }
    if (wx_buf_append(&c->frame.att, att, off, NULL) != 0)
        c->frame.n_att = 0;
}

/* The manager's view: one reply frame at the start of the input. */
static void fuzz_reply(const uint8_t *data, size_t size)
{
    static wx__frame_header h;
    wx_error err = WX_ERROR_INIT;
    size_t consumed = 0, body_len, total;
    json_t *result = NULL;
    int rc = wx__frame_parse_header((const char *)data, size, FUZZ_MAX_FRAME,
                                    &h, &consumed, &err);

    check(rc == 0 || rc == 1 || rc == WX_EPROTO, "header status");
    check(rc != WX_EPROTO || err.code == WX_EPROTO, "error filled");
    if (rc != 0)
        return;
    check(consumed > 0 && consumed <= size, "consumed within the input");
    check(h.n_att <= WX_FRAME_ATT_MAX, "attachment count");
    check(h.content_length <= FUZZ_MAX_FRAME, "body fits max_frame");
    total = h.content_length;
    for (size_t i = 0; i < h.n_att; i++) {
        check(h.att_len[i] <= FUZZ_MAX_FRAME - total, "frame fits max_frame");
        total += h.att_len[i];
    }
    data += consumed;
    size -= consumed;
    body_len = h.content_length < size ? h.content_length : size;
    rc = wx__rpc_parse_reply((const char *)data, body_len, 1, &result, &err);
    check(rc == 0 || rc == WX_EPROTO || rc == WX_EMODEL || rc == WX_EOOM,
          "reply status");
    check(rc != 0 || result != NULL, "a result on success");
    if (rc == 0) {
        wx__rpc_conn conn;
        wx__outputs outs;
        wx_agg_return agg;

        fake_conn(&conn, &h, data + body_len, size - body_len);
        wx__outputs_init(&outs, FUZZ_MAX_FRAME * 2);
        wx__wire_read_outputs(result, &conn, &outs, NULL);
        for (size_t i = 0; i < outs.n; i++)
            check(outs.items[i].name != NULL &&
                      (outs.items[i].len == 0 || outs.items[i].data),
                  "output bytes");
        wx__outputs_release(&outs);
        wx__frame_release(&conn.frame);
        memset(&agg, 0, sizeof(agg));
        if (wx__wire_read_agg_result(result, 1, &agg, NULL) == 0)
            check(agg.diagnostics != NULL, "diagnostics on success");
        json_decref(agg.diagnostics);
    }
    json_decref(result);
    /* The same body as an answer to another request id. */
    rc = wx__rpc_parse_reply((const char *)data, body_len, 7, &result, &err);
    json_decref(result);
}

/* ---- the runner's view: wx__rpc_serve over the whole input ---- */

static struct iovec echo_att[WX_FRAME_ATT_MAX];

static int handle(void *ctx, const char *method, json_t *params,
                  const wx__frame *frame, wx__rpc_reply *reply)
{
    (void)ctx;
    if (strcmp(method, "shutdown") == 0) {
        reply->result = json_true();
        reply->stop = true;
    } else if (strlen(method) % 2) {
        /* An error object with data (formatting of error replies). */
        reply->error_code = strlen(method) % 4 == 1 ? WX_RPC_MODEL_ERROR
                                                    : WX_RPC_METHOD_NOT_FOUND;
        reply->error_message = strdup(method);
        reply->error_data = json_incref(params);
    } else {
        /* Echo the params and the attachments. */
        for (size_t i = 0; i < frame->n_att; i++)
            echo_att[i] = (struct iovec){
                frame->att.data + frame->att_off[i],
                frame->att_off[i + 1] - frame->att_off[i]};
        reply->att = echo_att;
        reply->n_att = frame->n_att;
        reply->result = json_incref(params);
    }
    return 0;
}

static void fuzz_server(const uint8_t *data, size_t size)
{
    static int devnull = -1;
    wx_error err = WX_ERROR_INIT;
    int in, rc;

    if (devnull < 0)
        devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    in = memfd_create("fuzz_frame", MFD_CLOEXEC);
    if (in < 0 || devnull < 0) {
        perror("fuzz_frame: memfd_create or /dev/null");
        abort();
    }
    if ((size && write(in, data, size) != (ssize_t)size) ||
        lseek(in, 0, SEEK_SET) != 0) {
        perror("fuzz_frame: write");
        abort();
    }
    rc = wx__rpc_serve(in, devnull, FUZZ_MAX_FRAME, handle, NULL, NULL,
                       &err);
    check(rc == 0 || rc == WX_EPROTO || rc == WX_ECRASHED ||
              rc == WX_ETOOBIG,
          "server status");
    close(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reply(data, size);
    fuzz_server(data, size);
    return 0;
}
