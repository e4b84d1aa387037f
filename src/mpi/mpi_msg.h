/*
 * What the two ends of distributed mode share (docs/distributed.md):
 * messages between ranks, failures and settings in them.  Internal to
 * libwarmexec_mpi; only its files include mpi.h.
 *
 * A message is a 16-byte header (the length of the JSON text, then the
 * request id, both 64-bit little-endian), the JSON text, then the bytes of
 * the artifacts of the message that have a CAS ref, in order: for each
 * SimReturn its outputs, then (in results) its error details.
 *
 *   rank 0 -> worker, TAG_TASK:   {"k":"settings","settings":{name:text}}
 *                                 first, then {"k":"sim","task":SimTask},
 *                                 {"k":"agg","task":AggregationTask}
 *                                 (replicates loaded) and {"k":"stop"}
 *   worker -> rank 0, TAG_HELLO:  {"jobs":J} or {"error":M}, once
 *   worker -> rank 0, TAG_RESULT: {"status":S,"ret":SimReturn or
 *                                  AggregationReturn}, or
 *                                 {"status":S,"error":M,"fault":{...}}
 */
#ifndef WX_MPI_MSG_H
#define WX_MPI_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <warmexec/buf.h>
#include <warmexec/config.h>
#include <warmexec/pool.h>
#include <warmexec/result.h>

enum { TAG_HELLO = 1, TAG_TASK = 2, TAG_RESULT = 3 };

/* The largest message between ranks (MPI counts bytes in an int). */
#define WX_MPI_MESSAGE_MAX ((size_t)1 << 30)

/* Which artifacts of a message's SimReturns carry their bytes: outputs
 * with a CAS ref always; their error details too with WX_MPI_DETAILS (a
 * result, not the replicates of an aggregation, which need no details). */
enum { WX_MPI_OUTPUTS = 0, WX_MPI_DETAILS = 1 };

/*
 * `*out` (caller releases) = header, `head` (taken over, may be NULL
 * after a failed json_pack: WX_ENOMEM) and the bytes of the travelling
 * artifacts (`what`) of `reps[0..n)`, which must be loaded.  WX_ETOOBIG
 * past WX_MPI_MESSAGE_MAX.
 */
int wx__mpi_encode(wx_buf *out, uint64_t id, json_t *head,
                   wx_sim_return *reps, size_t n, unsigned what,
                   wx_error *err);

/* The bytes after a message's JSON, handed out in order. */
typedef struct wx__mpi_reader {
    const char *p;
    size_t left;
} wx__mpi_reader;

/* Parse a message's JSON into `*head` (caller's); `rest` gets the bytes
 * after it.  WX_EPROTO for a malformed message. */
int wx__mpi_decode(const wx_buf *msg, json_t **head, wx__mpi_reader *rest,
                   wx_error *err);

/* Give every travelling artifact (`what`) of `reps[0..n)` its bytes from
 * `rest`, which must hold exactly those.  WX_EPROTO, WX_ENOMEM. */
int wx__mpi_take_all(wx__mpi_reader *rest, wx_sim_return *reps, size_t n,
                     unsigned what, wx_error *err);

/* The request id in a message's header (0 when too short). */
uint64_t wx__mpi_message_id(const wx_buf *msg);

/* Blocking receive of one message from `source` (or MPI_ANY_SOURCE) with
 * `tag` into `*out` (initialised here; caller releases); `*from`
 * (optional) the sender. */
int wx__mpi_receive(int source, int tag, wx_buf *out, int *from,
                    wx_error *err);

/*
 * Sleep a little longer each time a polling loop finds nothing to do, from
 * 20 us up to `max_us`; reset `*us` to 0 when it does.  A loop expecting
 * results soon keeps `max_us` small (WX_MPI_PAUSE_BUSY): a result waiting
 * for the poll costs throughput.  An idle one sleeps longer.
 */
#define WX_MPI_PAUSE_BUSY 100
#define WX_MPI_PAUSE_IDLE 1000
void wx__mpi_idle_pause(int *us, int max_us);

/* A failed aggregation's fault, both ways; error_type becomes one of the
 * static names ("InternalError" when unknown). */
json_t *wx__mpi_fault_to_json(const wx_fault *f);
void wx__mpi_fault_from_json(const json_t *v, wx_fault *f);

/* Rank 0's settings, except those naming files on its machine (home and
 * the runner programs), as {name: text}; and applying them on a worker. */
json_t *wx__mpi_settings_of(const wx_config *cfg);
int wx__mpi_apply_settings(wx_config *cfg, json_t *v, wx_error *err);

#endif
