/*
 * A runner for tests, with fault injection.  It serves the worker protocol
 * (compat and warmexec/1) like a real runner and misbehaves on request.
 *
 *   fake_worker --bundle-digest D [options]
 *     --crash-at N --crash-how sigkill|sigsegv|exit3   die on the N-th execute
 *     --hang-ready          never answer ready
 *     --hang-execute        never answer execute
 *     --garbage-stdout      write bytes outside a frame before a reply
 *     --oversized           announce a 2 GiB Content-Length
 *     --invalid-json        answer execute with a body that is not JSON
 *     --report-digest X     echo X instead of the real digest in ready
 *     --compat              ignore the warmexec/1 offer
 *     --exit-before-ready   exit 1 at start, after a line on stderr
 *     --huge-artifact       reply with an attachment larger than allowed
 *     --once-file PATH      misbehave only in the first worker that creates
 *                           PATH (O_EXCL): later workers started with the
 *                           same options behave, so a pool's next worker of
 *                           the same bundle is healthy
 *
 * Every misbehaviour is announced by a "fake_worker: ..." line on stderr
 * first (for the stderr tail of faults).  Arguments that are not options
 * are ignored (tests pass a unique marker to find their processes).
 *
 * execute params (all optional): "bytes": size of artifact "out", whose
 * byte i is (uint8_t)(i * 31 + seed); "stderr": bytes written to stderr
 * during the call; "sleep_ms"; "fail": a message to report as a model
 * error (JSON-RPC -32000) of type "fail_type" (default ValueError);
 * "copies": n (at most 12) more artifacts "copy1".."copyn", each the
 * bytes of "out" (in separate attachments);
 * "payload": a string returned as artifact "payload"; "track": a file in
 * which the call records, under flock, "<running> <most running at once>"
 * of all calls sharing it (to measure concurrency across workers).
 * aggregate returns loss = the number of replicates and
 * diagnostics.sha256 = the SHA-256 of every received output, in order;
 * target_data "stderr" writes that many bytes to stderr first.
 */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <warmexec/json.h>

#include "b64.h"
#include "hash.h"
#include "rpc.h"

typedef struct fake {
    const char *digest;
    const char *report_digest;
    long crash_at;
    const char *crash_how;
    bool hang_ready, hang_execute, garbage, oversized, invalid_json;
    bool compat, huge, exit_before_ready;
    const char *once_file;
    int armed;        /* -1 unknown, 0 behave, 1 misbehave (--once-file) */
    bool attachments; /* negotiated */
    long executes;
    int out_fd;
    uint8_t *artifact;
    struct iovec att[16];
    char *b64;
} fake;

/* Whether this worker misbehaves: always, or once per --once-file. */
static bool armed(fake *f)
{
    if (!f->once_file)
        return true;
    if (f->armed < 0) {
        int fd = open(f->once_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                      0644);

        f->armed = fd >= 0;
        if (fd >= 0)
            close(fd);
    }
    return f->armed == 1;
}

static void hang(const char *where)
{
    fprintf(stderr, "fake_worker: hanging in %s\n", where);
    for (;;)
        pause();
}

static void crash(const char *how, long call)
{
    fprintf(stderr, "fake_worker: crashing (%s) at execute %ld\n", how,
            call);
    if (strcmp(how, "sigsegv") == 0) {
        /* Die by the signal even when a sanitizer installed a handler. */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    if (strcmp(how, "exit3") == 0)
        exit(3);
    raise(SIGKILL);
}

/* "<running> <max>" in `path`, updated by `delta` under an exclusive lock. */
static void track(const char *path, int delta)
{
    long running = 0, most = 0;
    char text[64];
    FILE *fp;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0 || flock(fd, LOCK_EX) != 0)
        exit(4);
    fp = fdopen(fd, "r+");
    if (!fp)
        exit(4);
    if (fscanf(fp, "%ld %ld", &running, &most) != 2)
        running = most = 0;
    running += delta;
    if (running > most)
        most = running;
    snprintf(text, sizeof(text), "%ld %ld\n", running, most);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, strlen(text), 0) < 0)
        exit(4);
    fclose(fp); /* also drops the lock */
}

static void write_stderr(long n)
{
    char chunk[4096];

    memset(chunk, 'e', sizeof(chunk));
    chunk[sizeof(chunk) - 1] = '\n';
    for (; n > 0; n -= (long)sizeof(chunk))
        if (write(2, chunk, n < (long)sizeof(chunk) ? (size_t)n
                                                    : sizeof(chunk)) < 0)
            return;
}

static json_t *ready_result(fake *f, json_t *params)
{
    const char *digest = f->digest;
    json_t *r;

    if (f->report_digest && armed(f)) {
        fprintf(stderr, "fake_worker: reporting digest %s\n",
                f->report_digest);
        digest = f->report_digest;
    }
    r = json_pack("{s:b,s:s,s:s,s:i}", "ready", 1, "bundle_digest", digest,
                  "runner", "fake", "pid", (int)getpid());

    if (!f->compat && json_is_true(json_object_get(params, "attachments"))) {
        f->attachments = true;
        json_object_set_new(r, "protocol", json_string("warmexec/1"));
        json_object_set_new(r, "attachments", json_true());
    }
    return r;
}

/* One artifact in the reply: an attachment or base64. */
static json_t *artifact_value(fake *f, size_t slot, const void *data,
                              size_t len, wx__rpc_reply *reply)
{
    if (f->attachments) {
        f->att[slot] = (struct iovec){(void *)data, len};
        reply->att = f->att;
        reply->n_att = slot + 1;
        return json_pack("{s:I}", "$att", (json_int_t)slot);
    }
    free(f->b64);
    f->b64 = malloc(wx__b64_encoded_len(len) + 1);
    wx__b64_encode(data, len, f->b64);
    return json_string(f->b64);
}

static void misbehave(fake *f)
{
    if (!(f->garbage || f->oversized || f->invalid_json || f->huge) ||
        !armed(f))
        return;
    fprintf(stderr, "fake_worker: breaking the protocol\n");
    if (f->garbage && write(f->out_fd, "hello from print()\n", 19) < 0)
        exit(2);
    if (f->oversized &&
        write(f->out_fd, "Content-Length: 2147483648\r\n\r\n{", 31) < 0)
        exit(2);
    if (f->invalid_json &&
        write(f->out_fd, "Content-Length: 9\r\n\r\n{not json", 30) < 0)
        exit(2);
    if (f->huge && write(f->out_fd,
                         "Content-Length: 2\r\nAttachments: 4294967296\r\n\r\n"
                         "{}",
                         48) < 0)
        exit(2);
    hang("execute"); /* the manager must give up on its own */
}

static int execute(fake *f, json_t *params, wx__rpc_reply *reply)
{
    json_t *p = json_object_get(params, "params");
    long bytes = (long)json_integer_value(json_object_get(p, "bytes"));
    long sleep_ms = (long)json_integer_value(json_object_get(p, "sleep_ms"));
    long copies = (long)json_integer_value(json_object_get(p, "copies"));
    const char *fail = json_string_value(json_object_get(p, "fail"));
    const char *fail_type =
        json_string_value(json_object_get(p, "fail_type"));
    const char *tracked = json_string_value(json_object_get(p, "track"));
    long seed = (long)json_integer_value(json_object_get(params, "seed"));
    json_t *payload = json_object_get(p, "payload");
    json_t *result = json_object();

    if (++f->executes == f->crash_at && armed(f))
        crash(f->crash_how, f->executes);
    if (f->hang_execute && armed(f))
        hang("execute");
    write_stderr((long)json_integer_value(json_object_get(p, "stderr")));
    misbehave(f);
    if (tracked)
        track(tracked, 1);
    if (sleep_ms > 0)
        nanosleep(&(struct timespec){sleep_ms / 1000,
                                     sleep_ms % 1000 * 1000000},
                  NULL);
    if (tracked)
        track(tracked, -1);
    if (fail) {
        reply->error_code = WX_RPC_MODEL_ERROR;
        reply->error_message = strdup(fail);
        reply->error_data = json_pack("{s:s,s:s,s:s}", "type",
                                      fail_type ? fail_type : "ValueError",
                                      "message", fail, "traceback",
                                      "Traceback: fake_worker execute");
        json_decref(result);
        return 0;
    }
    free(f->artifact);
    f->artifact = malloc(bytes > 0 ? (size_t)bytes : 1);
    for (long i = 0; i < bytes; i++)
        f->artifact[i] = (uint8_t)(i * 31 + seed);
    json_object_set_new(result, "out", artifact_value(f, 0, f->artifact,
                                                      (size_t)(bytes > 0 ? bytes : 0),
                                                      reply));
    copies = copies < 0 ? 0 : copies > 12 ? 12 : copies;
    for (long i = 1; i <= copies; i++) {
        char name[32];

        snprintf(name, sizeof(name), "copy%ld", i);
        json_object_set_new(result, name,
                            artifact_value(f, (size_t)i, f->artifact,
                                           (size_t)(bytes > 0 ? bytes : 0),
                                           reply));
    }
    if (json_is_string(payload))
        json_object_set_new(result, "payload",
                            artifact_value(f, (size_t)copies + 1,
                                           json_string_value(payload),
                                           json_string_length(payload),
                                           reply));
    reply->result = result;
    return 0;
}

/* The bytes of a serialised output: attachment or base64 (decoded). */
static int output_bytes(const json_t *inl, const wx__frame *frame,
                        const uint8_t **data, size_t *len, uint8_t **tmp)
{
    json_t *att = json_object_get(inl, "$att");

    if (json_is_integer(att)) {
        size_t i = (size_t)json_integer_value(att);

        if (i >= frame->n_att)
            return -1;
        *data = (const uint8_t *)frame->att.data + frame->att_off[i];
        *len = frame->att_off[i + 1] - frame->att_off[i];
        return 0;
    }
    if (!json_is_string(inl))
        return -1;
    *tmp = malloc(wx__b64_decoded_max(json_string_length(inl)) + 1);
    *data = *tmp;
    return wx__b64_decode(json_string_value(inl), json_string_length(inl),
                          *tmp, len, NULL);
}

static int aggregate(json_t *params, const wx__frame *frame,
                     wx__rpc_reply *reply)
{
    json_t *list = json_object_get(params, "sim_returns");
    json_t *sums = json_array(), *sr;
    size_t i;

    write_stderr((long)json_integer_value(
        json_object_get(json_object_get(params, "target_data"), "stderr")));
    json_array_foreach(list, i, sr)
    {
        const char *name;
        json_t *o;

        json_object_foreach(json_object_get(sr, "outputs"), name, o)
        {
            const uint8_t *data = NULL;
            uint8_t *tmp = NULL;
            size_t len = 0;
            char hex[65];

            if (output_bytes(json_object_get(o, "inline"), frame, &data, &len,
                             &tmp) != 0 ||
                wx__sha256_hex(data, len, hex, NULL) != 0) {
                free(tmp);
                json_decref(sums);
                reply->error_code = WX_RPC_INVALID_PARAMS;
                reply->error_message = strdup("bad sim_returns");
                return 0;
            }
            json_array_append_new(sums, json_string(hex));
            free(tmp);
        }
    }
    reply->result = json_pack("{s:f,s:{s:o},s:I,s:{}}", "loss",
                              (double)json_array_size(list), "diagnostics",
                              "sha256", sums, "n_replicates",
                              (json_int_t)json_array_size(list), "outputs");
    return 0;
}

static int handle(void *ctx, const char *method, json_t *params,
                  const wx__frame *frame, wx__rpc_reply *reply)
{
    fake *f = ctx;

    if (strcmp(method, "ready") == 0) {
        if (f->hang_ready && armed(f))
            hang("ready");
        reply->result = ready_result(f, params);
    } else if (strcmp(method, "execute") == 0) {
        return execute(f, params, reply);
    } else if (strcmp(method, "aggregate") == 0) {
        return aggregate(params, frame, reply);
    } else if (strcmp(method, "shutdown") == 0) {
        reply->result = json_pack("{s:b}", "ok", 1);
        reply->stop = true;
    } else {
        reply->error_code = WX_RPC_METHOD_NOT_FOUND;
        reply->error_message = strdup("Method not found");
    }
    return 0;
}

static void parse_args(fake *f, int argc, char **argv)
{
    static const struct option options[] = {
        {"bundle-digest", required_argument, NULL, 'd'},
        {"bundle-path", required_argument, NULL, 'p'},
        {"crash-at", required_argument, NULL, 'c'},
        {"crash-how", required_argument, NULL, 'w'},
        {"report-digest", required_argument, NULL, 'r'},
        {"hang-ready", no_argument, NULL, 'R'},
        {"hang-execute", no_argument, NULL, 'E'},
        {"garbage-stdout", no_argument, NULL, 'g'},
        {"oversized", no_argument, NULL, 'o'},
        {"invalid-json", no_argument, NULL, 'j'},
        {"compat", no_argument, NULL, 'C'},
        {"exit-before-ready", no_argument, NULL, 'x'},
        {"huge-artifact", no_argument, NULL, 'H'},
        {"once-file", required_argument, NULL, 'O'},
        {NULL, 0, NULL, 0}};
    int c;

    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 'd': f->digest = optarg; break;
        case 'p': break;
        case 'c': f->crash_at = atol(optarg); break;
        case 'w': f->crash_how = optarg; break;
        case 'r': f->report_digest = optarg; break;
        case 'R': f->hang_ready = true; break;
        case 'E': f->hang_execute = true; break;
        case 'g': f->garbage = true; break;
        case 'o': f->oversized = true; break;
        case 'j': f->invalid_json = true; break;
        case 'C': f->compat = true; break;
        case 'H': f->huge = true; break;
        case 'O': f->once_file = optarg; break;
        case 'x': f->exit_before_ready = true; break;
        default: exit(2);
        }
    }
    if (f->exit_before_ready && armed(f)) {
        fprintf(stderr, "fake_worker: cannot load the model\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    fake f = {.digest = "", .crash_how = "sigkill", .armed = -1};
    wx_error err = WX_ERROR_INIT;
    int rc;

    parse_args(&f, argc, argv);
    /* As a real runner: the protocol gets a private fd, stdout -> stderr. */
    f.out_fd = dup(1);
    dup2(2, 1);
    rc = wx__rpc_serve(0, f.out_fd, (size_t)1 << 30, handle, &f, NULL,
                       &err);
    if (rc)
        fprintf(stderr, "fake_worker: %s\n", err.message);
    free(f.artifact);
    free(f.b64);
    return rc ? 1 : 0;
}
