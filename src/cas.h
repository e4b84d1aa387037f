/*
 * Internal side of the CAS: objects stored while their bytes arrive.
 *
 * A stream stores one object of known length whose bytes are appended
 * to a buffer by the caller (a frame reader filling it from a worker's
 * pipe, say): each call to wx__cas_stream_arrived() writes the new bytes
 * to a temporary file, and a helper thread hashes them meanwhile, so
 * that when the last byte is there only the rest of the hash remains
 * (docs/cas.md).  The buffer must not move or change until the stream
 * is finished or aborted.  A stream belongs to one thread; its helper
 * only reads the buffer.
 */
#ifndef WX_CAS_INTERNAL_H
#define WX_CAS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <warmexec/cas.h>

#include "hash.h"

/* Objects from this size on are worth a stream (and its thread). */
#define WX__CAS_STREAM_MIN ((size_t)1 << 20)

typedef struct wx__cas_stream wx__cas_stream;

/*
 * Begin storing the `len` bytes that will arrive at `data`.  WX_EINVAL
 * when the store cannot stream (the memory store), WX_EIO when no
 * temporary file can be made, WX_ENOMEM.  `*out` is owned by the caller
 * until wx__cas_stream_finish() or wx__cas_stream_abort().
 */
int wx__cas_stream_open(wx_cas *cas, const uint8_t *data, size_t len,
                        wx__cas_stream **out, wx_error *err);

/*
 * The first `n` bytes (n <= len, never less than before) are there.  A
 * write failure is kept for wx__cas_stream_finish().
 */
void wx__cas_stream_arrived(wx__cas_stream *s, size_t n);

/*
 * All bytes are there: finish the hash and give the object its name (as
 * wx_cas_put() would, durability included).  Frees `s`, also on failure.
 */
int wx__cas_stream_finish(wx__cas_stream *s, char hex[WX_HEX256_LEN + 1],
                          wx_error *err);

/* Forget the object: its temporary file is removed.  Frees `s`. */
void wx__cas_stream_abort(wx__cas_stream *s);

#endif
